"""Signed-out sessions at the gateway, through a real Envoy.

Envoy's ext_authz filter calls the real user service's Check for the
session of every access token. A token of a signed-out or revoked session
therefore gets 401 before its RPC reaches a service, although its signature
and exp are still valid. The fixtures in conftest.py run Envoy in front of
the real user service and of doubles that count every call.
"""

from __future__ import annotations

import grpc
import httpx
from gateway_harness import (
    ADMIN_EMAIL,
    ANALYST_EMAIL,
    Gateway,
    bearer,
    grpc_call,
    mint_token,
    session_id_of,
    sign_in_pair,
)

UNAUTHENTICATED = 16
LIST_CAMPAIGNS = "/retain.comms.v1.CommsService/ListCampaigns"


async def sign_out(client: httpx.AsyncClient, refresh_token: str) -> None:
    reply = await client.post("/v1/auth:signOut", json={"refreshToken": refresh_token})
    assert reply.status_code == 200, reply.text


async def test_signed_out_token_gets_401_without_call(
    client: httpx.AsyncClient, gateway: Gateway
) -> None:
    comms = gateway.doubles["comms"]
    access, refresh = await sign_in_pair(client, ADMIN_EMAIL)
    before_sign_out = await client.get("/v1/campaigns", headers=bearer(access))
    await sign_out(client, refresh)
    calls = comms.count("ListCampaigns")

    reply = await client.get("/v1/campaigns", headers=bearer(access))

    assert before_sign_out.status_code == 200, before_sign_out.text
    assert reply.status_code == 401, reply.text
    assert reply.json()["code"] == UNAUTHENTICATED
    assert "signed out or revoked" in reply.json()["message"]
    assert comms.count("ListCampaigns") == calls


async def test_other_live_session_still_works(
    client: httpx.AsyncClient, gateway: Gateway
) -> None:
    comms = gateway.doubles["comms"]
    signed_out, refresh = await sign_in_pair(client, ADMIN_EMAIL)
    live, _ = await sign_in_pair(client, ADMIN_EMAIL)
    await sign_out(client, refresh)
    calls = comms.count("ListCampaigns")

    rejected = await client.get("/v1/campaigns", headers=bearer(signed_out))
    reply = await client.get("/v1/campaigns", headers=bearer(live))

    assert rejected.status_code == 401, rejected.text
    assert reply.status_code == 200, reply.text
    assert comms.count("ListCampaigns") == calls + 1


async def test_signed_out_token_rejected_over_grpc(
    client: httpx.AsyncClient, gateway: Gateway
) -> None:
    comms = gateway.doubles["comms"]
    access, refresh = await sign_in_pair(client, ANALYST_EMAIL)
    await sign_out(client, refresh)
    calls = comms.count("ListCampaigns")

    code = await grpc_call(
        gateway, LIST_CAMPAIGNS, (("authorization", f"Bearer {access}"),)
    )

    assert code == grpc.StatusCode.UNAUTHENTICATED
    assert comms.count("ListCampaigns") == calls


async def test_reused_refresh_token_revokes_access_token(
    client: httpx.AsyncClient, gateway: Gateway
) -> None:
    comms = gateway.doubles["comms"]
    access, refresh = await sign_in_pair(client, ADMIN_EMAIL)
    first = await client.post("/v1/auth:refresh", json={"refreshToken": refresh})
    reused = await client.post("/v1/auth:refresh", json={"refreshToken": refresh})
    calls = comms.count("ListCampaigns")

    reply = await client.get("/v1/campaigns", headers=bearer(access))

    assert first.status_code == 200, first.text
    assert reused.status_code == 401, reused.text
    assert reply.status_code == 401, reply.text
    assert comms.count("ListCampaigns") == calls


async def test_refreshed_token_of_live_session_works(
    client: httpx.AsyncClient, gateway: Gateway
) -> None:
    access, refresh = await sign_in_pair(client, ADMIN_EMAIL)
    refreshed = await client.post("/v1/auth:refresh", json={"refreshToken": refresh})
    next_access = str(refreshed.json()["accessToken"])

    reply = await client.get("/v1/campaigns", headers=bearer(next_access))

    assert refreshed.status_code == 200, refreshed.text
    assert session_id_of(next_access) == session_id_of(access)
    assert reply.status_code == 200, reply.text


async def test_token_of_unknown_session_gets_401(
    client: httpx.AsyncClient, gateway: Gateway
) -> None:
    # Signed with the service's own key, so only the session check fails.
    comms = gateway.doubles["comms"]
    token = await mint_token(gateway.service, sid="no-such-session")
    calls = comms.count("ListCampaigns")

    reply = await client.get("/v1/campaigns", headers=bearer(token))

    assert reply.status_code == 401, reply.text
    assert comms.count("ListCampaigns") == calls


async def test_token_without_session_id_gets_401(
    client: httpx.AsyncClient, gateway: Gateway
) -> None:
    token = await mint_token(gateway.service, sid="")

    reply = await client.get("/v1/campaigns", headers=bearer(token))

    assert reply.status_code == 401, reply.text
    assert "sid" in reply.json()["message"]


def jwt_stat(gateway: Gateway, name: str) -> int:
    reply = httpx.get(
        f"{gateway.admin_url}/stats?format=json&filter=jwt_authn", timeout=5
    )
    stats = reply.json()["stats"]
    return sum(s.get("value", 0) for s in stats if s.get("name", "").endswith(name))


async def test_signature_cached_session_checked(
    client: httpx.AsyncClient, gateway: Gateway
) -> None:
    access, refresh = await sign_in_pair(client, ADMIN_EMAIL)
    await client.get("/v1/campaigns", headers=bearer(access))
    hits = jwt_stat(gateway, "jwt_cache_hit")

    for _ in range(5):
        reply = await client.get("/v1/campaigns", headers=bearer(access))
        assert reply.status_code == 200, reply.text
    await sign_out(client, refresh)
    revoked = await client.get("/v1/campaigns", headers=bearer(access))

    assert jwt_stat(gateway, "jwt_cache_hit") >= hits + 5
    assert revoked.status_code == 401, revoked.text
