"""The gateway's authentication and authorization, through a real Envoy.

Envoy runs the bootstrap from retain_cli.envoy_config in front of the real
user service (sign-in, JWKS, ext_authz Check for API keys) on its own
database. The events, inference and comms services are doubles that record
every call with its metadata, so each test can show whether a request
reached its service. A dashboard file server serves a small built folder.
Everything listens on 127.0.0.1 on ports the kernel picks.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import grpc
import httpx
import jwt
import pytest
from argon2 import profiles
from cryptography.hazmat.primitives.asymmetric import ec
from google.api import annotations_pb2
from google.protobuf import descriptor_pb2
from retain.user.v1 import user_pb2, user_pb2_grpc
from retain_cli import envoy_auth, gateway_access, static
from retain_cli.admin_accounts import FIRST_ADMINS, ensure_first_admins
from retain_cli.envoy_config import (
    SERVICES,
    EnvoyOptions,
    envoy_binary,
    envoy_command,
    write_config,
)
from retain_cli.infra import Postgres
from retain_runtime.callers import ROLE_HEADER, SUBJECT_HEADER
from retain_runtime.certs import CertPaths, spiffe_id
from retain_runtime.clock import Clock
from retain_runtime.credentials import aio_channel, server_credentials, sync_channel
from retain_user import tokens
from retain_user.passwords import Passwords
from retain_user.server import Service, prepare_database, start
from retain_user.settings import UserSettings

ROOT = Path(__file__).resolve().parents[2]
DESCRIPTOR_SET = ROOT / "build" / "retain.binpb"

ADMIN_EMAIL = "admin@gateway.test"
ANALYST_EMAIL = "analyst@gateway.test"
PASSWORD = "correct horse battery"
DASHBOARD_ORIGIN = "http://127.0.0.1:8080"
INDEX_HTML = b"<!doctype html><title>Retain</title>"
APP_JS = b"console.log('retain');"
FORM_TYPE = "application/x-www-form-urlencoded"
SECRET_FILE = b"outside the dashboard root"

T = TypeVar("T")


@dataclass
class RecordingService(grpc.GenericRpcHandler):
    """A stand-in service that records each call and replies with an empty
    message, which decodes as the default of any response type."""

    calls: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        method = str(details.method)

        async def handle(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            metadata = {k: str(v) for k, v in context.invocation_metadata() or ()}
            self.calls.append((method, metadata))
            return b""

        return grpc.unary_unary_rpc_method_handler(handle)

    def count(self, method: str) -> int:
        return sum(1 for name, _ in self.calls if name.endswith("/" + method))

    def last(self, method: str) -> dict[str, str]:
        for name, metadata in reversed(self.calls):
            if name.endswith("/" + method):
                return metadata
        raise AssertionError(f"{method} was never called; calls: {self.calls}")


@dataclass(frozen=True)
class Gateway:
    base_url: str
    admin_url: str
    config_path: Path
    service: Service
    doubles: dict[str, RecordingService]


def wait_for(check: Callable[[], T | None], timeout: float, description: str) -> T:
    """Poll check every 50 ms until it returns a value other than None."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"timed out after {timeout:.0f}s waiting for {description}"
            )
        time.sleep(0.05)


# Fixtures: the user service, the doubles, the file server and Envoy.


@pytest.fixture(scope="module")
async def user_service(postgres: Postgres, cert_dir: Path) -> AsyncIterator[Service]:
    from cryptography.fernet import Fernet

    settings = UserSettings.from_env(
        "user",
        {
            "RETAIN_USER_PORT": "0",
            "RETAIN_USER_DATABASE_URL": postgres.url(f"gateway_{uuid.uuid4().hex[:8]}"),
            "RETAIN_CERT_DIR": str(cert_dir),
            "RETAIN_USER_DATA_KEY": Fernet.generate_key().decode(),
        },
    )
    await asyncio.to_thread(prepare_database, settings.database_url)
    service = await start(settings, Clock(), passwords=Passwords(profiles.CHEAPEST))
    yield service
    await service.stop(0)


@pytest.fixture(scope="module")
async def operator(
    user_service: Service, cert_dir: Path
) -> AsyncIterator[user_pb2_grpc.UserServiceStub]:
    paths = CertPaths.in_directory(cert_dir, "operator")
    channel = aio_channel(f"127.0.0.1:{user_service.port}", paths)
    stub = user_pb2_grpc.UserServiceStub(channel)
    for email, role in (
        (ADMIN_EMAIL, user_pb2.ROLE_ADMIN),
        (ANALYST_EMAIL, user_pb2.ROLE_ANALYST),
    ):
        await stub.CreateAdmin(
            user_pb2.CreateAdminRequest(email=email, password=PASSWORD, role=role)
        )
    yield stub
    await channel.close()


@pytest.fixture(scope="module")
async def doubles(
    cert_dir: Path,
) -> AsyncIterator[dict[str, tuple[RecordingService, int]]]:
    servers, started = [], {}
    for name in ("events", "inference", "comms"):
        recorder = RecordingService()
        server = grpc.aio.server()
        server.add_generic_rpc_handlers([recorder])
        credentials = server_credentials(CertPaths.in_directory(cert_dir, name))
        port = server.add_secure_port("127.0.0.1:0", credentials)
        await server.start()
        servers.append(server)
        started[name] = (recorder, port)
    yield started
    for server in servers:
        await server.stop(grace=None)


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    root = tmp_path_factory.mktemp("dist")
    (root / "index.html").write_bytes(INDEX_HTML)
    (root / "assets").mkdir()
    (root / "assets" / "app-1234.js").write_bytes(APP_JS)
    secret = tmp_path_factory.mktemp("outside") / "secret.txt"
    secret.write_bytes(SECRET_FILE)
    (root / "assets" / "link.txt").symlink_to(secret)
    server = static.make_server(root, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


def gateway_options(
    directory: Path, cert_dir: Path, ports: dict[str, int], dashboard_port: int
) -> EnvoyOptions:
    if not DESCRIPTOR_SET.exists():
        pytest.fail(f"{DESCRIPTOR_SET} is missing; run `make proto` to generate it")
    return EnvoyOptions(
        descriptor_set=DESCRIPTOR_SET,
        certs=CertPaths.in_directory(cert_dir, "envoy"),
        upstreams={name: f"127.0.0.1:{port}" for name, port in ports.items()},
        listen_port=0,
        admin_port=0,
        access_log_path=directory / "access.log",
        dashboard=f"127.0.0.1:{dashboard_port}",
    )


def listener_port(admin_url: str) -> int | None:
    try:
        if httpx.get(f"{admin_url}/ready", timeout=0.5).status_code != 200:
            return None
        reply = httpx.get(f"{admin_url}/listeners?format=json", timeout=0.5)
    except httpx.TransportError:
        return None
    for status in reply.json().get("listener_statuses", []):
        port = (
            status.get("local_address", {}).get("socket_address", {}).get("port_value")
        )
        if status["name"] == "retain_http" and port:
            return int(port)
    return None


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory,
    cert_dir: Path,
    user_service: Service,
    operator: user_pb2_grpc.UserServiceStub,
    doubles: dict[str, tuple[RecordingService, int]],
    dashboard: int,
) -> Iterator[Gateway]:
    directory = tmp_path_factory.mktemp("gateway")
    ports = {"user": user_service.port, **{n: port for n, (_, port) in doubles.items()}}
    config_path = write_config(
        gateway_options(directory, cert_dir, ports, dashboard), directory / "envoy.json"
    )
    admin_path = directory / "admin-address"
    output_path = directory / "envoy.out"
    command = envoy_command(
        config_path, log_level="warn", admin_address_path=admin_path
    )

    def admin_address() -> str | None:
        if process.poll() is not None:
            raise RuntimeError(f"Envoy exited:\n{output_path.read_text()}")
        text = admin_path.read_text().strip() if admin_path.exists() else ""
        return text or None

    with output_path.open("wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    try:
        admin_url = "http://" + wait_for(admin_address, 30, "Envoy's admin address")
        port = wait_for(lambda: listener_port(admin_url), 30, "Envoy's listener")
        yield Gateway(
            base_url=f"http://127.0.0.1:{port}",
            admin_url=admin_url,
            config_path=config_path,
            service=user_service,
            doubles={name: recorder for name, (recorder, _) in doubles.items()},
        )
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
async def client(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as http:
        yield http


# Helpers.


async def sign_in(
    client: httpx.AsyncClient, email: str, password: str = PASSWORD
) -> str:
    reply = await client.post(
        "/v1/auth:signIn", json={"email": email, "password": password}
    )
    assert reply.status_code == 200, reply.text
    return str(reply.json()["accessToken"])


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


async def create_api_key(
    operator: user_pb2_grpc.UserServiceStub, requests_per_minute: int = 0
) -> user_pb2.CreateApiKeyResponse:
    request = user_pb2.CreateApiKeyRequest(
        name=f"partner-{uuid.uuid4().hex[:6]}", requests_per_minute=requests_per_minute
    )
    return await operator.CreateApiKey(request)


async def mint_token(
    service: Service, *, expires_in: int = 600, key: Any = None, **claims: Any
) -> str:
    """Sign an access token like the user service does, with changes."""
    kid, signing_key = await service.accounts.signing_keys.signing_key()
    now = int(time.time())
    payload = {
        "iss": tokens.ISSUER,
        "aud": tokens.AUDIENCE,
        "sub": ADMIN_EMAIL,
        "role": "admin",
        "iat": now - 1200,
        "exp": now + expires_in,
        "jti": uuid.uuid4().hex,
        "sid": uuid.uuid4().hex,
        **claims,
    }
    return jwt.encode(
        payload, key or signing_key, algorithm="ES256", headers={"kid": kid}
    )


async def grpc_call(
    gateway: Gateway, path: str, metadata: tuple[tuple[str, str], ...]
) -> grpc.StatusCode:
    target = gateway.base_url.removeprefix("http://")
    async with grpc.aio.insecure_channel(target) as channel:
        call = channel.unary_unary(
            path,
            request_serializer=lambda message: message,
            response_deserializer=lambda message: message,
        )
        try:
            await call(b"", metadata=metadata, timeout=10)
        except grpc.aio.AioRpcError as error:
            return error.code()
    return grpc.StatusCode.OK


# The config and the role table.


def test_envoy_validate_accepts_gateway_config(gateway: Gateway) -> None:
    result = subprocess.run(
        [
            str(envoy_binary()),
            "--mode",
            "validate",
            "-c",
            str(gateway.config_path),
            "--disable-hot-restart",
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout
    assert "Deprecated" not in result.stdout + result.stderr


def test_role_table_lists_exactly_envoy_rpcs() -> None:
    from retain_comms.policy import POLICY as COMMS
    from retain_events.policy import POLICY as EVENTS
    from retain_inference.policy import POLICY as INFERENCE
    from retain_user.policy import POLICY as USER

    for policy in (USER, EVENTS, INFERENCE, COMMS):
        allowed = {
            path.rsplit("/", 1)[1]
            for path in policy.methods()
            if policy.allows(path, spiffe_id("envoy"))
        }
        assert set(gateway_access.GATEWAY_ACCESS[policy.service]) == allowed


def test_every_http_rule_is_in_role_table() -> None:
    descriptors = descriptor_pb2.FileDescriptorSet.FromString(
        DESCRIPTOR_SET.read_bytes()
    )
    rules = 0
    for file in descriptors.file:
        for service in file.service:
            full_name = f"{file.package}.{service.name}"
            for method in service.method:
                if method.options.HasExtension(annotations_pb2.http):
                    rules += 1
                    assert method.name in gateway_access.GATEWAY_ACCESS[full_name]

    assert rules > 0


def test_mesh_only_rpcs_absent_from_role_table() -> None:
    for service, method in [
        ("retain.user.v1.UserService", "GetContacts"),
        ("retain.user.v1.UserService", "CheckConsents"),
        ("retain.user.v1.UserService", "RecordOptOut"),
        ("retain.user.v1.UserService", "RecordOptIn"),
        ("retain.events.v1.EventsService", "ListSequences"),
        ("retain.events.v1.EventsService", "GetCustomerActivity"),
        ("retain.events.v1.EventsService", "DeleteCustomerEvents"),
        ("retain.inference.v1.InferenceService", "ComposeMessages"),
    ]:
        assert method not in gateway_access.GATEWAY_ACCESS[service]


def test_jwt_issuer_and_audience_match_user_service() -> None:
    assert envoy_auth.ISSUER == tokens.ISSUER
    assert envoy_auth.AUDIENCE == tokens.AUDIENCE


def test_table_services_match_clusters() -> None:
    assert set(gateway_access.GATEWAY_ACCESS) == set(SERVICES.values())


# Authentication.


async def test_no_credentials_gets_401(
    client: httpx.AsyncClient, gateway: Gateway
) -> None:
    comms = gateway.doubles["comms"]
    before = comms.count("GetCampaign")

    reply = await client.get("/v1/campaigns/7")

    assert reply.status_code == 401, reply.text
    assert reply.json()["httpStatus"] == 401
    assert "credentials" in reply.json()["message"]
    assert comms.count("GetCampaign") == before


async def test_admin_token_reaches_service_with_identity(
    client: httpx.AsyncClient, gateway: Gateway
) -> None:
    token = await sign_in(client, ADMIN_EMAIL)

    reply = await client.post("/v1/campaigns", json={}, headers=bearer(token))

    metadata = gateway.doubles["comms"].last("CreateCampaign")
    assert reply.status_code == 200, reply.text
    assert metadata[SUBJECT_HEADER] == ADMIN_EMAIL
    assert metadata[ROLE_HEADER] == "admin"
    assert "authorization" not in metadata
    assert "x-api-key" not in metadata


async def test_admin_token_passes_user_service_role_check(
    client: httpx.AsyncClient,
) -> None:
    token = await sign_in(client, ADMIN_EMAIL)

    reply = await client.get("/v1/admins", headers=bearer(token))

    emails = {admin["email"] for admin in reply.json()["admins"]}
    assert reply.status_code == 200, reply.text
    assert ADMIN_EMAIL in emails


async def test_admin_token_over_grpc_reaches_service(gateway: Gateway) -> None:
    token = await mint_token(gateway.service)

    code = await grpc_call(
        gateway,
        "/retain.comms.v1.CommsService/ListAlerts",
        (("authorization", f"Bearer {token}"),),
    )

    assert code == grpc.StatusCode.OK
    assert gateway.doubles["comms"].last("ListAlerts")[ROLE_HEADER] == "admin"


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ({"expires_in": -300}, 401),
        # jwt_authn replies 403 to a valid token meant for another audience.
        ({"aud": "someone-else"}, 403),
        ({"iss": "someone-else"}, 401),
        ({"key": ec.generate_private_key(ec.SECP256R1())}, 401),
    ],
    ids=["expired", "wrong_audience", "wrong_issuer", "wrong_signature"],
)
async def test_invalid_token_rejected_without_call(
    client: httpx.AsyncClient, gateway: Gateway, change: dict[str, Any], status: int
) -> None:
    comms = gateway.doubles["comms"]
    before = comms.count("ListCampaigns")
    token = await mint_token(gateway.service, **change)

    reply = await client.get("/v1/campaigns", headers=bearer(token))

    assert reply.status_code == status, reply.text
    assert comms.count("ListCampaigns") == before


async def test_garbage_token_gets_401(client: httpx.AsyncClient) -> None:
    reply = await client.get("/v1/campaigns", headers=bearer("not.a.jwt"))

    assert reply.status_code == 401, reply.text


# Authorization by role.


async def test_analyst_on_admin_rpc_gets_403(
    client: httpx.AsyncClient, gateway: Gateway
) -> None:
    comms = gateway.doubles["comms"]
    before = comms.count("LaunchCampaign")
    token = await sign_in(client, ANALYST_EMAIL)

    reply = await client.post("/v1/campaigns/3:launch", json={}, headers=bearer(token))

    assert reply.status_code == 403, reply.text
    assert reply.json()["httpStatus"] == 403
    assert comms.count("LaunchCampaign") == before


async def test_analyst_token_reads_campaigns(
    client: httpx.AsyncClient, gateway: Gateway
) -> None:
    token = await sign_in(client, ANALYST_EMAIL)

    reply = await client.post("/v1/campaigns/3:dryRun", json={}, headers=bearer(token))

    metadata = gateway.doubles["comms"].last("DryRunCampaign")
    assert reply.status_code == 200, reply.text
    assert metadata[SUBJECT_HEADER] == ANALYST_EMAIL
    assert metadata[ROLE_HEADER] == "analyst"


async def test_analyst_cannot_list_admins(client: httpx.AsyncClient) -> None:
    token = await sign_in(client, ANALYST_EMAIL)

    reply = await client.get("/v1/admins", headers=bearer(token))

    assert reply.status_code == 403, reply.text


@pytest.mark.parametrize(
    "path",
    [
        "/retain.user.v1.UserService/GetContacts",
        "/retain.user.v1.UserService/CheckConsents",
        "/retain.events.v1.EventsService/ListSequences",
        "/retain.inference.v1.InferenceService/ComposeMessages",
    ],
)
async def test_mesh_only_rpc_unreachable_even_for_admin(
    gateway: Gateway, path: str
) -> None:
    token = await mint_token(gateway.service)
    calls_before = sum(len(double.calls) for double in gateway.doubles.values())

    code = await grpc_call(gateway, path, (("authorization", f"Bearer {token}"),))

    assert code == grpc.StatusCode.UNIMPLEMENTED
    assert sum(len(double.calls) for double in gateway.doubles.values()) == calls_before


async def test_mesh_only_rpc_without_credentials_gets_404(gateway: Gateway) -> None:
    code = await grpc_call(gateway, "/retain.user.v1.UserService/GetContacts", ())

    assert code == grpc.StatusCode.UNIMPLEMENTED


async def test_mesh_only_rpc_over_http_gets_404(client: httpx.AsyncClient) -> None:
    reply = await client.post(
        "/retain.user.v1.UserService/GetContacts",
        content=b"{}",
        headers={"content-type": "application/json"},
    )

    assert reply.status_code == 404, reply.text


# Partner API keys.


async def test_api_key_reaches_service_as_partner(
    client: httpx.AsyncClient, gateway: Gateway, operator: user_pb2_grpc.UserServiceStub
) -> None:
    key = await create_api_key(operator)

    reply = await client.get("/v1/events:stats", headers={"x-api-key": key.secret})

    metadata = gateway.doubles["events"].last("GetEventStats")
    assert reply.status_code == 200, reply.text
    assert metadata[SUBJECT_HEADER] == f"api-key:{key.api_key.api_key_id}"
    assert metadata[ROLE_HEADER] == "partner"
    assert "x-api-key" not in metadata


async def test_api_key_on_non_partner_rpc_gets_403(
    client: httpx.AsyncClient, gateway: Gateway, operator: user_pb2_grpc.UserServiceStub
) -> None:
    comms = gateway.doubles["comms"]
    before = comms.count("ListCampaigns")
    key = await create_api_key(operator)

    reply = await client.get("/v1/campaigns", headers={"x-api-key": key.secret})

    assert reply.status_code == 403, reply.text
    assert comms.count("ListCampaigns") == before


async def test_revoked_api_key_gets_401(
    client: httpx.AsyncClient, gateway: Gateway, operator: user_pb2_grpc.UserServiceStub
) -> None:
    events = gateway.doubles["events"]
    key = await create_api_key(operator)
    await operator.RevokeApiKey(
        user_pb2.RevokeApiKeyRequest(api_key_id=key.api_key.api_key_id)
    )
    before = events.count("GetEventStats")

    reply = await client.get("/v1/events:stats", headers={"x-api-key": key.secret})

    assert reply.status_code == 401, reply.text
    assert "invalid or revoked" in reply.json()["message"]
    assert events.count("GetEventStats") == before


async def test_unknown_api_key_gets_401(client: httpx.AsyncClient) -> None:
    forged = "rk_0123456789abcdef_" + "x" * 43

    reply = await client.get("/v1/events:stats", headers={"x-api-key": forged})

    assert reply.status_code == 401, reply.text


async def test_api_key_over_rate_gets_429(
    client: httpx.AsyncClient, gateway: Gateway, operator: user_pb2_grpc.UserServiceStub
) -> None:
    events = gateway.doubles["events"]
    key = await create_api_key(operator, requests_per_minute=2)
    headers = {"x-api-key": key.secret}
    first = await client.get("/v1/events:stats", headers=headers)
    second = await client.get("/v1/events:stats", headers=headers)
    before = events.count("GetEventStats")

    third = await client.get("/v1/events:stats", headers=headers)

    assert first.status_code == 200, first.text
    assert second.status_code == 200, second.text
    assert third.status_code == 429, third.text
    assert int(third.headers["retry-after"]) >= 1
    assert events.count("GetEventStats") == before


async def test_valid_token_skips_api_key_check(
    client: httpx.AsyncClient, gateway: Gateway
) -> None:
    token = await sign_in(client, ANALYST_EMAIL)
    headers = {**bearer(token), "x-api-key": "rk_not_a_key"}

    reply = await client.get("/v1/events:stats", headers=headers)

    assert reply.status_code == 200, reply.text
    assert gateway.doubles["events"].last("GetEventStats")[ROLE_HEADER] == "analyst"


# Public routes.


async def test_cors_preflight_answered_without_token(client: httpx.AsyncClient) -> None:
    reply = await client.options(
        "/retain.comms.v1.CommsService/LaunchCampaign",
        headers={
            "origin": DASHBOARD_ORIGIN,
            "access-control-request-method": "POST",
            "access-control-request-headers": "authorization, content-type, x-grpc-web",
        },
    )

    allowed = reply.headers.get("access-control-allow-headers", "")
    assert reply.status_code == 200, reply.text
    assert reply.headers.get("access-control-allow-origin") == DASHBOARD_ORIGIN
    assert "authorization" in allowed
    assert "x-grpc-web" in allowed


async def test_denial_carries_cors_headers(client: httpx.AsyncClient) -> None:
    reply = await client.get("/v1/campaigns", headers={"origin": DASHBOARD_ORIGIN})

    assert reply.status_code == 401, reply.text
    assert reply.headers.get("access-control-allow-origin") == DASHBOARD_ORIGIN


async def test_callback_reachable_without_token(
    client: httpx.AsyncClient, gateway: Gateway
) -> None:
    comms = gateway.doubles["comms"]
    before = comms.count("ReceiveDeliveryReport")

    reply = await client.post(
        "/callbacks/africastalking/delivery?secret=s3cret",
        content=b"id=ATXid_1&status=Success",
        headers={"content-type": FORM_TYPE},
    )

    assert reply.status_code == 200, reply.text
    assert comms.count("ReceiveDeliveryReport") == before + 1


async def test_signing_keys_public_as_jwks(client: httpx.AsyncClient) -> None:
    reply = await client.get("/v1/auth/keys")

    keys = reply.json()["keys"]
    assert reply.status_code == 200, reply.text
    assert keys[0]["kty"] == "EC"
    assert keys[0]["alg"] == "ES256"


async def test_refresh_ignores_expired_access_token(
    client: httpx.AsyncClient, gateway: Gateway
) -> None:
    signed_in = await client.post(
        "/v1/auth:signIn", json={"email": ADMIN_EMAIL, "password": PASSWORD}
    )
    expired = await mint_token(gateway.service, expires_in=-300)

    reply = await client.post(
        "/v1/auth:refresh",
        json={"refreshToken": signed_in.json()["refreshToken"]},
        headers=bearer(expired),
    )

    assert reply.status_code == 200, reply.text
    assert reply.json()["accessToken"]


async def test_sign_in_locks_after_repeated_failures(client: httpx.AsyncClient) -> None:
    email = f"locked-{uuid.uuid4().hex[:6]}@gateway.test"
    wrong = {"email": email, "password": "wrong password!"}
    failures = [await client.post("/v1/auth:signIn", json=wrong) for _ in range(5)]

    locked = await client.post("/v1/auth:signIn", json=wrong)

    assert [reply.status_code for reply in failures] == [401] * 5
    assert locked.status_code == 429, locked.text
    assert "locked" in locked.json()["message"]


# The dashboard's files.


@pytest.mark.parametrize(
    ("path", "body"),
    [("/", INDEX_HTML), ("/campaigns/7", INDEX_HTML), ("/assets/app-1234.js", APP_JS)],
    ids=["root", "client_route", "asset"],
)
async def test_dashboard_files_served_without_token(
    client: httpx.AsyncClient, path: str, body: bytes
) -> None:
    reply = await client.get(path)

    assert reply.status_code == 200, reply.text
    assert reply.content == body


@pytest.mark.parametrize("path", ["/assets/missing.js", "/assets/link.txt"])
async def test_missing_or_outside_file_gets_404(
    client: httpx.AsyncClient, path: str
) -> None:
    reply = await client.get(path)

    assert reply.status_code == 404
    assert SECRET_FILE not in reply.content


async def test_path_outside_root_serves_index(client: httpx.AsyncClient) -> None:
    # Envoy keeps %2F as it is, and the file server resolves the decoded
    # path under its root, where no etc/passwd exists.
    reply = await client.get("/..%2F..%2Fetc%2Fpasswd")

    assert reply.status_code == 200, reply.text
    assert reply.content == INDEX_HTML


async def test_unknown_api_path_still_404_with_dashboard(
    client: httpx.AsyncClient,
) -> None:
    reply = await client.get("/v1/nothing/here")

    assert reply.status_code == 404, reply.text
    assert json.loads(reply.text)["httpStatus"] == 404


# The first admin accounts that `retain up` creates.


async def test_first_admins_sign_in_through_gateway(
    client: httpx.AsyncClient,
    gateway: Gateway,
    cert_dir: Path,
    tmp_path: Path,
) -> None:
    paths = CertPaths.in_directory(cert_dir, "operator")
    channel = sync_channel(f"127.0.0.1:{gateway.service.port}", paths)
    stub = user_pb2_grpc.UserServiceStub(channel)
    try:
        # Blocking calls to a server on this event loop run in a thread.
        first = await asyncio.to_thread(ensure_first_admins, stub, tmp_path)
        again = await asyncio.to_thread(ensure_first_admins, stub, tmp_path)
    finally:
        channel.close()

    assert [account.email for account in first] == [e for e, _ in FIRST_ADMINS]
    assert [account.created for account in first] == [True, True]
    assert [account.created for account in again] == [False, False]
    for account in first:
        password = account.password_path.read_text().strip()
        assert account.password_path.stat().st_mode & 0o777 == 0o600
        assert await sign_in(client, account.email, password)
