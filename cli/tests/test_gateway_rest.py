"""The gateway's REST contract, through a real Envoy.

Path values, query parameters, error bodies and body size limits of
transcoded JSON calls. The fixtures in conftest.py run Envoy in front of the
real user service and of doubles that record every call and its request, so
a test can show whether a request reached its service and what it carried.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from gateway_harness import (
    ADMIN_EMAIL,
    DESCRIPTOR_SET,
    Gateway,
    access_log_entry,
    bearer,
    create_api_key,
    mint_token,
    sign_in,
)
from retain.comms.v1 import comms_pb2
from retain.events.v1 import events_pb2
from retain.user.v1 import user_pb2_grpc
from retain_cli.envoy_config import EnvoyOptions, build_config
from retain_cli.envoy_replies import LOCAL_REPLY_HINTS
from retain_runtime.certs import CertPaths
from retain_runtime.credentials import MAX_MESSAGE_BYTES
from retain_runtime.server import SERVER_OPTIONS

# google.rpc.Code values.
INVALID_ARGUMENT = 3


def assert_400_naming(reply: httpx.Response, name: str) -> None:
    assert reply.status_code == 400, reply.text
    assert f'"{name}"' in reply.json()["message"]
NOT_FOUND = 5
PERMISSION_DENIED = 7
RESOURCE_EXHAUSTED = 8
UNAUTHENTICATED = 16


@pytest.fixture(scope="module")
async def admin(gateway: Gateway) -> AsyncIterator[dict[str, str]]:
    """Headers with an admin's access token, signed in once per module."""
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as http:
        yield bearer(await sign_in(http, ADMIN_EMAIL))


def campaign_body(message_bytes: int) -> bytes:
    """Return CreateCampaign JSON whose gRPC message is message_bytes long."""
    overhead = comms_pb2.CreateCampaignRequest(
        spec=comms_pb2.CampaignSpec(name="x" * (message_bytes - 16))
    ).ByteSize() - (message_bytes - 16)
    name = "x" * (message_bytes - overhead)
    request = comms_pb2.CreateCampaignRequest(spec=comms_pb2.CampaignSpec(name=name))
    assert request.ByteSize() == message_bytes
    return json.dumps({"spec": {"name": name}}).encode()


# Path values.


async def test_malformed_path_value_gets_400_naming_it(
    client: httpx.AsyncClient, gateway: Gateway, admin: dict[str, str]
) -> None:
    marker = f"malformed-path-{uuid.uuid4().hex}"

    reply = await client.get(
        "/v1/customers/abc", headers={**admin, "user-agent": marker}
    )

    entry = await access_log_entry(gateway, marker)
    assert_400_naming(reply, "abc")
    assert reply.json()["code"] == INVALID_ARGUMENT
    assert "customer_id" in reply.json()["message"]
    # Envoy replied itself: no upstream host took the request.
    assert entry["upstream_host"] is None


async def test_malformed_path_value_never_reaches_service(
    client: httpx.AsyncClient, gateway: Gateway, admin: dict[str, str]
) -> None:
    inference = gateway.doubles["inference"]
    before = inference.count("GetCustomerScore")

    reply = await client.get("/v1/customers/abc/score", headers=admin)

    assert_400_naming(reply, "abc")
    assert inference.count("GetCustomerScore") == before


# Query parameters.


async def test_misspelled_query_parameter_gets_400_naming_it(
    client: httpx.AsyncClient, gateway: Gateway, admin: dict[str, str]
) -> None:
    comms = gateway.doubles["comms"]
    before = comms.count("ListMessages")

    reply = await client.get("/v1/campaigns/3/messages?pagesize=2", headers=admin)

    assert_400_naming(reply, "pagesize")
    assert reply.json()["code"] == INVALID_ARGUMENT
    assert comms.count("ListMessages") == before


@pytest.mark.parametrize("name", ["pageSize", "page_size"])
async def test_query_parameter_takes_json_or_proto_name(
    client: httpx.AsyncClient, gateway: Gateway, admin: dict[str, str], name: str
) -> None:
    reply = await client.get(f"/v1/campaigns/3/messages?{name}=2", headers=admin)

    request = comms_pb2.ListMessagesRequest.FromString(
        gateway.doubles["comms"].last_request("ListMessages")
    )
    assert reply.status_code == 200, reply.text
    assert request.page_size == 2
    assert request.campaign_id == 3


async def test_enum_query_parameter_takes_value_name(
    client: httpx.AsyncClient, gateway: Gateway, admin: dict[str, str]
) -> None:
    reply = await client.get(
        "/v1/campaigns/3/messages?state=MESSAGE_STATE_DEFERRED", headers=admin
    )

    request = comms_pb2.ListMessagesRequest.FromString(
        gateway.doubles["comms"].last_request("ListMessages")
    )
    assert reply.status_code == 200, reply.text
    assert request.state == comms_pb2.MESSAGE_STATE_DEFERRED


async def test_timestamp_query_parameter_takes_rfc3339(
    client: httpx.AsyncClient, gateway: Gateway, admin: dict[str, str]
) -> None:
    reply = await client.get(
        "/v1/events:stats",
        params={"startTime": "2024-03-01T03:00:00+03:00"},
        headers=admin,
    )

    request = events_pb2.GetEventStatsRequest.FromString(
        gateway.doubles["events"].last_request("GetEventStats")
    )
    assert reply.status_code == 200, reply.text
    assert request.start_time.ToJsonString() == "2024-03-01T00:00:00Z"


@pytest.mark.parametrize("name", ["customerId", "customer_id"])
async def test_query_repeating_path_field_gets_400(
    client: httpx.AsyncClient, gateway: Gateway, admin: dict[str, str], name: str
) -> None:
    inference = gateway.doubles["inference"]
    before = inference.count("GetCustomerScore")

    reply = await client.get(f"/v1/customers/7/score?{name}=9", headers=admin)

    assert_400_naming(reply, name)
    assert reply.json()["code"] == INVALID_ARGUMENT
    assert inference.count("GetCustomerScore") == before


async def test_query_repeating_path_field_rejected_on_post(
    client: httpx.AsyncClient, gateway: Gateway, admin: dict[str, str]
) -> None:
    comms = gateway.doubles["comms"]
    before = comms.count("LaunchCampaign")

    reply = await client.post(
        "/v1/campaigns/7:launch?campaignId=9", json={}, headers=admin
    )

    assert_400_naming(reply, "campaignId")
    assert comms.count("LaunchCampaign") == before


async def test_query_repeating_path_field_never_asks_user_service(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    # Customer 2 does not exist, so a 404 would mean the query value won.
    reply = await client.get("/v1/customers/1?customerId=2", headers=admin)

    assert reply.status_code == 400, reply.text
    assert reply.json()["httpStatus"] == 400


async def test_body_field_repeating_path_field_loses_to_path(
    client: httpx.AsyncClient, gateway: Gateway, admin: dict[str, str]
) -> None:
    reply = await client.post(
        "/v1/campaigns/7:launch", json={"campaignId": "9"}, headers=admin
    )

    request = comms_pb2.LaunchCampaignRequest.FromString(
        gateway.doubles["comms"].last_request("LaunchCampaign")
    )
    assert reply.status_code == 200, reply.text
    assert request.campaign_id == 7


# JSON bodies.


async def test_body_takes_int64_as_number_or_string(
    client: httpx.AsyncClient, gateway: Gateway, admin: dict[str, str]
) -> None:
    comms = gateway.doubles["comms"]
    replies = [
        await client.post(
            "/v1/campaigns", json={"spec": {"maxCustomers": value}}, headers=admin
        )
        for value in (5, "6")
    ]

    request = comms_pb2.CreateCampaignRequest.FromString(
        comms.last_request("CreateCampaign")
    )
    assert [reply.status_code for reply in replies] == [200, 200]
    assert request.spec.max_customers == 6


async def test_unknown_body_field_ignored(
    client: httpx.AsyncClient, gateway: Gateway, admin: dict[str, str]
) -> None:
    # Envoy 1.40's transcoder has no option to reject it, as README.md states.
    comms = gateway.doubles["comms"]
    before = comms.count("CreateCampaign")

    reply = await client.post(
        "/v1/campaigns",
        json={"spec": {"nmae": "typo", "name": "Win back"}},
        headers=admin,
    )

    request = comms_pb2.CreateCampaignRequest.FromString(
        comms.last_request("CreateCampaign")
    )
    assert reply.status_code == 200, reply.text
    assert comms.count("CreateCampaign") == before + 1
    assert request.spec.name == "Win back"


# Error bodies.


@pytest.mark.parametrize(
    ("path", "credentials", "status", "code"),
    [
        ("/v1/campaigns", False, 401, UNAUTHENTICATED),
        ("/v1/nothing/here", True, 404, NOT_FOUND),
        ("/v1/campaigns?colour=red", True, 400, INVALID_ARGUMENT),
    ],
    ids=["no_credentials", "unknown_path", "unknown_query_parameter"],
)
async def test_gateway_error_is_json_with_grpc_code(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    path: str,
    credentials: bool,
    status: int,
    code: int,
) -> None:
    reply = await client.get(path, headers=admin if credentials else {})

    body = reply.json()
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"] == "application/json"
    assert body["code"] == code
    assert body["httpStatus"] == status
    assert body["message"]


async def test_api_key_on_admin_rpc_gets_json_403(
    client: httpx.AsyncClient, operator: user_pb2_grpc.UserServiceStub
) -> None:
    key = await create_api_key(operator)

    reply = await client.get("/v1/campaigns", headers={"x-api-key": key.secret})

    assert reply.status_code == 403, reply.text
    assert reply.json()["code"] == PERMISSION_DENIED
    assert reply.json()["httpStatus"] == 403


async def test_401_messages_say_how_to_authenticate(
    client: httpx.AsyncClient, gateway: Gateway
) -> None:
    expired = await mint_token(gateway.service, expires_in=-300)

    missing = await client.get("/v1/campaigns")
    stale = await client.get("/v1/campaigns", headers=bearer(expired))

    assert missing.status_code == 401, missing.text
    assert stale.status_code == 401, stale.text
    assert missing.json()["code"] == UNAUTHENTICATED
    assert stale.json()["code"] == UNAUTHENTICATED
    assert missing.json()["message"].endswith(LOCAL_REPLY_HINTS[401])
    assert stale.json()["message"] == (
        "Jwt is expired; send a valid access token (Authorization: Bearer, "
        "from POST /v1/auth:signIn or /v1/auth:refresh) or an API key (x-api-key)"
    )


async def test_403_message_says_role_may_not_call(
    client: httpx.AsyncClient, operator: user_pb2_grpc.UserServiceStub
) -> None:
    key = await create_api_key(operator)

    reply = await client.get("/v1/campaigns", headers={"x-api-key": key.secret})

    assert reply.status_code == 403, reply.text
    assert reply.json()["code"] == PERMISSION_DENIED
    assert reply.json()["message"] == (
        "RBAC: access denied; your role may not call this method"
    )


async def test_service_error_is_google_rpc_status(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    reply = await client.get("/v1/customers/424242", headers=admin)

    body = reply.json()
    assert reply.status_code == 404, reply.text
    assert reply.headers["content-type"] == "application/json"
    assert body["code"] == NOT_FOUND
    assert "424242" in body["message"]
    assert body["details"] == []


# Body size limits.


def test_size_limits_agree_with_grpc_servers(tmp_path: Path) -> None:
    options = EnvoyOptions(
        descriptor_set=DESCRIPTOR_SET, certs=CertPaths.in_directory(tmp_path, "envoy")
    )
    listener = build_config(options)["static_resources"]["listeners"][0]
    manager = listener["filter_chains"][0]["filters"][0]["typed_config"]
    filters = {f["name"]: f["typed_config"] for f in manager["http_filters"]}

    buffer = filters["envoy.filters.http.buffer"]
    transcoder = filters["envoy.filters.http.grpc_json_transcoder"]
    assert dict(SERVER_OPTIONS)["grpc.max_receive_message_length"] == MAX_MESSAGE_BYTES
    # The buffer filter counts the 5-byte gRPC frame header too.
    assert buffer["max_request_bytes"] == MAX_MESSAGE_BYTES + 5
    assert transcoder["max_request_body_size"] == MAX_MESSAGE_BYTES


async def test_message_at_limit_reaches_service(
    client: httpx.AsyncClient, gateway: Gateway, admin: dict[str, str]
) -> None:
    comms = gateway.doubles["comms"]
    before = comms.count("CreateCampaign")

    reply = await client.post(
        "/v1/campaigns",
        content=campaign_body(MAX_MESSAGE_BYTES),
        headers={**admin, "content-type": "application/json"},
    )

    assert reply.status_code == 200, reply.text
    assert comms.count("CreateCampaign") == before + 1
    assert len(comms.last_request("CreateCampaign")) == MAX_MESSAGE_BYTES


async def test_message_over_limit_gets_413_without_call(
    client: httpx.AsyncClient, gateway: Gateway, admin: dict[str, str]
) -> None:
    comms = gateway.doubles["comms"]
    before = comms.count("CreateCampaign")

    reply = await client.post(
        "/v1/campaigns",
        content=campaign_body(MAX_MESSAGE_BYTES + 1),
        headers={**admin, "content-type": "application/json"},
    )

    assert reply.status_code == 413, reply.text
    assert reply.json()["code"] == RESOURCE_EXHAUSTED
    assert reply.json()["message"] == (
        "Payload Too Large; the limit is 16 MiB per request message"
    )
    assert comms.count("CreateCampaign") == before


async def test_limit_counts_message_not_json_text(
    client: httpx.AsyncClient, gateway: Gateway, admin: dict[str, str]
) -> None:
    # Each \\u0041 escape is 6 bytes of JSON and 1 byte of the message.
    name = "\\u0041" * (MAX_MESSAGE_BYTES // 4)
    body = ('{"spec": {"name": "' + name + '"}}').encode()

    reply = await client.post(
        "/v1/campaigns",
        content=body,
        headers={**admin, "content-type": "application/json"},
    )

    request = comms_pb2.CreateCampaignRequest.FromString(
        gateway.doubles["comms"].last_request("CreateCampaign")
    )
    assert len(body) > MAX_MESSAGE_BYTES
    assert reply.status_code == 200, reply.text
    assert request.spec.name == "A" * (MAX_MESSAGE_BYTES // 4)
