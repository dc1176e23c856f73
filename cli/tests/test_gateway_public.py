"""The gateway's public routes, through a real Envoy.

Sign-in, the JWKS, the Africa's Talking callbacks, CORS preflights, the
dashboard's files and the OpenAPI document need no credentials. The
fixtures in conftest.py run Envoy in front of the real user service and of
doubles that record every call.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import httpx
import pytest
from gateway_harness import (
    ADMIN_EMAIL,
    APP_JS,
    DASHBOARD_ORIGIN,
    FORM_TYPE,
    INDEX_HTML,
    OPENAPI_DOCUMENT,
    PASSWORD,
    SECRET_FILE,
    Gateway,
    bearer,
    mint_token,
    sign_in,
)
from retain.user.v1 import user_pb2_grpc
from retain_cli.admin_accounts import FIRST_ADMINS, ensure_first_admins
from retain_runtime.certs import CertPaths
from retain_runtime.credentials import sync_channel

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


# The OpenAPI document.


async def test_openapi_document_served_without_credentials(
    client: httpx.AsyncClient,
) -> None:
    reply = await client.get("/openapi.json")

    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"] == "application/json"
    assert reply.content == OPENAPI_DOCUMENT.read_bytes()
    assert reply.json()["openapi"] == "3.1.0"
