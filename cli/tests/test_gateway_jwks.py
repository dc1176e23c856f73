"""JWKS fetching of the real-Envoy gateway in front of the real user service."""

from __future__ import annotations

import asyncio

import httpx
from gateway_harness import ADMIN_EMAIL, Gateway, bearer, sign_in

JWKS_FETCH_STATS = r"^http\.retain_http\.jwt_authn\.jwks_fetch_"


async def jwks_fetch_counters(admin_url: str) -> dict[str, int]:
    async with httpx.AsyncClient(timeout=5) as http:
        reply = await http.get(
            f"{admin_url}/stats", params={"filter": JWKS_FETCH_STATS}
        )
    lines = [line.split(": ", 1) for line in reply.text.splitlines()]
    return {name.rsplit(".", 1)[-1]: int(value) for name, value in lines}


async def test_healthy_gateway_has_no_failed_jwks_fetch(
    gateway: Gateway, client: httpx.AsyncClient
) -> None:
    token = await sign_in(client, ADMIN_EMAIL)
    reply = await client.get("/v1/campaigns", headers=bearer(token))
    # A failing fetch was repeated every second, so a few seconds show it.
    await asyncio.sleep(3)

    counters = await jwks_fetch_counters(gateway.admin_url)
    log = (gateway.config_path.parent / "envoy.out").read_text()
    assert reply.status_code == 200, reply.text
    assert counters["jwks_fetch_failed"] == 0
    assert "Jwks async fetching" not in log
    assert "Jwks remote fetch is failed" not in log
