"""The gateway's authentication and authorization, through a real Envoy.

The fixtures in conftest.py run Envoy in front of the real user service and
of doubles that record every call, so each test can show whether a request
reached its service. test_gateway_public.py covers the routes without
credentials, test_gateway_rest.py the REST contract and
test_gateway_revocation.py the sign-out of access tokens.
"""

from __future__ import annotations

import subprocess
from typing import Any

import grpc
import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from gateway_harness import (
    ADMIN_EMAIL,
    ANALYST_EMAIL,
    DESCRIPTOR_SET,
    Gateway,
    bearer,
    create_api_key,
    grpc_call,
    mint_token,
    sign_in,
)
from google.api import annotations_pb2
from google.protobuf import descriptor_pb2
from retain.user.v1 import user_pb2, user_pb2_grpc
from retain_cli import envoy_auth, gateway_access
from retain_cli.envoy_config import SERVICES, envoy_binary
from retain_runtime.callers import ROLE_HEADER, SUBJECT_HEADER
from retain_runtime.certs import spiffe_id
from retain_user import tokens

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


async def test_admin_token_over_grpc_reaches_service(
    client: httpx.AsyncClient, gateway: Gateway
) -> None:
    token = await sign_in(client, ADMIN_EMAIL)

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
