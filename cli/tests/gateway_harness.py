"""Parts of the real-Envoy gateway harness that the gateway tests share.

The fixtures in conftest.py start Envoy from retain_cli.envoy_config in front
of the real user service and of doubles for the events, inference and comms
services. This module contains the doubles, the running gateway's addresses and
the helpers that sign in, mint tokens and make gRPC calls through Envoy.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import grpc
import httpx
import jwt
import pytest
from retain.user.v1 import user_pb2, user_pb2_grpc
from retain_cli.envoy_config import EnvoyOptions, envoy_command, write_config
from retain_runtime.certs import CertPaths
from retain_user import tokens
from retain_user.server import Service

ROOT = Path(__file__).resolve().parents[2]
DESCRIPTOR_SET = ROOT / "build" / "retain.binpb"
OPENAPI_DOCUMENT = ROOT / "docs" / "openapi.json"

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
    # The serialized request of each call, in call order.
    requests: list[bytes] = field(default_factory=list)

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        method = str(details.method)

        async def handle(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            metadata = {k: str(v) for k, v in context.invocation_metadata() or ()}
            self.calls.append((method, metadata))
            self.requests.append(request)
            return b""

        return grpc.unary_unary_rpc_method_handler(handle)

    def count(self, method: str) -> int:
        return sum(1 for name, _ in self.calls if name.endswith("/" + method))

    def last(self, method: str) -> dict[str, str]:
        for name, metadata in reversed(self.calls):
            if name.endswith("/" + method):
                return metadata
        raise AssertionError(f"{method} was never called; calls: {self.calls}")

    def last_request(self, method: str) -> bytes:
        for (name, _), request in zip(
            reversed(self.calls), reversed(self.requests), strict=True
        ):
            if name.endswith("/" + method):
                return request
        raise AssertionError(f"{method} was never called; calls: {self.calls}")


@dataclass(frozen=True)
class Gateway:
    base_url: str
    admin_url: str
    config_path: Path
    service: Service
    doubles: dict[str, RecordingService]

    @property
    def access_log(self) -> Path:
        return self.config_path.parent / "access.log"

    def upstream_calls(self) -> int:
        """Return how many calls the doubles have received so far."""
        return sum(len(double.calls) for double in self.doubles.values())


async def access_log_entry(gateway: Gateway, user_agent: str) -> dict[str, Any]:
    """Wait for the access log line of the request with this user agent."""

    def logged() -> dict[str, Any] | None:
        path = gateway.access_log
        lines = path.read_text().splitlines() if path.exists() else []
        found = [line for line in lines if user_agent in line]
        return json.loads(found[0]) if found else None

    deadline = time.monotonic() + 10
    while (entry := logged()) is None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"no access log line for user agent {user_agent}")
        await asyncio.sleep(0.05)
    return entry


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


async def wait_for_async(
    check: Callable[[], T | None], timeout: float, description: str
) -> T:
    """Poll check like wait_for, but yield to the event loop between tries."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"timed out after {timeout:.0f}s waiting for {description}"
            )
        await asyncio.sleep(0.05)


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
        openapi_document=OPENAPI_DOCUMENT,
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


@contextmanager
def running_envoy(options: EnvoyOptions, directory: Path) -> Iterator[tuple[str, int]]:
    """Run Envoy with options until the block ends; yield (admin URL, port)."""
    config_path = write_config(options, directory / "envoy.json")
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
        yield admin_url, port
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def sign_in(
    client: httpx.AsyncClient, email: str, password: str = PASSWORD
) -> str:
    """Sign in through the gateway and return the access token."""
    access_token, _ = await sign_in_pair(client, email, password)
    return access_token


async def sign_in_pair(
    client: httpx.AsyncClient, email: str, password: str = PASSWORD
) -> tuple[str, str]:
    """Sign in through the gateway; return (access token, refresh token)."""
    reply = await client.post(
        "/v1/auth:signIn", json={"email": email, "password": password}
    )
    assert reply.status_code == 200, reply.text
    body = reply.json()
    return str(body["accessToken"]), str(body["refreshToken"])


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
    """Sign an access token like the user service does, with changes.

    The default sid names no session, so the gateway rejects the token as
    revoked unless the test passes the sid of a live session.
    """
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


def session_id_of(access_token: str) -> str:
    """Return the sid claim of an access token, without verifying it."""
    claims = jwt.decode(access_token, options={"verify_signature": False})
    return str(claims["sid"])


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
