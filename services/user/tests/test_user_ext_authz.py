"""Envoy's ext_authz Check on the user service: sessions, API keys, rates.

Check is called with Envoy's certificate, as Envoy calls it, and gets the
claims of a verified access token as jwt_authn's metadata, as Envoy sends
them. The gateway tests in cli/tests drive it through a real Envoy.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
import jwt
import pytest
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
from envoy.type.v3 import http_status_pb2
from google.rpc import code_pb2
from retain.user.v1 import user_pb2, user_pb2_grpc
from retain_runtime.certs import CertPaths
from retain_runtime.credentials import aio_channel
from retain_user.ext_authz import JWT_NAMESPACE, JWT_PAYLOAD_KEY, RateLimiter
from retain_user.server import Service
from retain_user.session_cache import LIVE_SECONDS, SessionCache
from user_helpers import rpc_error

CheckStub = external_auth_pb2_grpc.AuthorizationStub


@pytest.fixture
async def check_as(
    user_service: Service, cert_dir: Path
) -> AsyncIterator[Callable[[str], CheckStub]]:
    channels = []

    def stub_for(name: str) -> CheckStub:
        paths = CertPaths.in_directory(cert_dir, name)
        channel = aio_channel(f"127.0.0.1:{user_service.port}", paths)
        channels.append(channel)
        return CheckStub(channel)

    yield stub_for
    for channel in channels:
        await channel.close()


def check_request(api_key: str = "") -> external_auth_pb2.CheckRequest:
    request = external_auth_pb2.CheckRequest()
    http = request.attributes.request.http
    http.method = "POST"
    http.path = "/retain.events.v1.EventsService/IngestEvents"
    if api_key:
        http.headers["x-api-key"] = api_key
    return request


def token_check_request(claims: dict[str, object]) -> external_auth_pb2.CheckRequest:
    """A CheckRequest as Envoy sends it after jwt_authn verified a token."""
    request = check_request()
    namespace = request.attributes.metadata_context.filter_metadata[JWT_NAMESPACE]
    namespace.update({JWT_PAYLOAD_KEY: claims})
    return request


async def sign_in_claims(
    operator: user_pb2_grpc.UserServiceStub, envoy: user_pb2_grpc.UserServiceStub
) -> tuple[dict[str, object], str]:
    """Create an admin, sign in; return the token's claims and refresh token."""
    email = "session@ext-authz.test"
    password = "correct horse battery"
    await operator.CreateAdmin(
        user_pb2.CreateAdminRequest(
            email=email, password=password, role=user_pb2.ROLE_ADMIN
        )
    )
    signed_in = await envoy.SignIn(
        user_pb2.SignInRequest(email=email, password=password)
    )
    claims = jwt.decode(signed_in.access_token, options={"verify_signature": False})
    return claims, signed_in.refresh_token


async def create_key(
    operator: user_pb2_grpc.UserServiceStub, requests_per_minute: int = 0
) -> user_pb2.CreateApiKeyResponse:
    request = user_pb2.CreateApiKeyRequest(
        name="partner", requests_per_minute=requests_per_minute
    )
    return await operator.CreateApiKey(request)


def headers_of(response: external_auth_pb2.CheckResponse) -> dict[str, str]:
    return {
        option.header.key: option.header.value
        for option in response.ok_response.headers
    }


async def test_valid_key_allowed_as_partner(
    check_as: Callable[[str], CheckStub], operator: user_pb2_grpc.UserServiceStub
) -> None:
    key = await create_key(operator)

    response = await check_as("envoy").Check(check_request(key.secret))

    key_id = key.api_key.api_key_id
    assert response.status.code == code_pb2.OK
    assert headers_of(response) == {
        "x-retain-subject": f"api-key:{key_id}",
        "x-retain-role": "partner",
    }
    assert response.dynamic_metadata["role"] == "partner"
    assert response.dynamic_metadata["api_key_id"] == key_id


async def test_missing_key_denied_with_401(
    check_as: Callable[[str], CheckStub],
) -> None:
    response = await check_as("envoy").Check(check_request())

    assert response.status.code == code_pb2.UNAUTHENTICATED
    assert response.denied_response.status.code == http_status_pb2.Unauthorized
    assert "x-api-key" in response.denied_response.body


@pytest.mark.parametrize(
    "secret",
    ["rk_short", "rk_0123456789abcdef_" + "A" * 43, "not-a-key"],
    ids=["malformed", "unknown_id", "no_prefix"],
)
async def test_unknown_key_denied_with_401(
    check_as: Callable[[str], CheckStub], secret: str
) -> None:
    response = await check_as("envoy").Check(check_request(secret))

    assert response.denied_response.status.code == http_status_pb2.Unauthorized


async def test_wrong_secret_of_known_id_denied(
    check_as: Callable[[str], CheckStub], operator: user_pb2_grpc.UserServiceStub
) -> None:
    key = await create_key(operator)
    last = "B" if key.secret.endswith("A") else "A"
    tampered = key.secret[:-1] + last

    response = await check_as("envoy").Check(check_request(tampered))

    assert response.denied_response.status.code == http_status_pb2.Unauthorized


async def test_revoked_key_denied_with_401(
    check_as: Callable[[str], CheckStub], operator: user_pb2_grpc.UserServiceStub
) -> None:
    key = await create_key(operator)
    await operator.RevokeApiKey(
        user_pb2.RevokeApiKeyRequest(api_key_id=key.api_key.api_key_id)
    )

    response = await check_as("envoy").Check(check_request(key.secret))

    assert response.denied_response.status.code == http_status_pb2.Unauthorized


async def test_key_over_rate_denied_with_429(
    check_as: Callable[[str], CheckStub], operator: user_pb2_grpc.UserServiceStub
) -> None:
    key = await create_key(operator, requests_per_minute=3)
    envoy = check_as("envoy")
    allowed = [await envoy.Check(check_request(key.secret)) for _ in range(3)]

    response = await envoy.Check(check_request(key.secret))

    retry_after = {
        option.header.key: option.header.value
        for option in response.denied_response.headers
    }
    assert [r.status.code for r in allowed] == [code_pb2.OK] * 3
    assert response.status.code == code_pb2.RESOURCE_EXHAUSTED
    assert response.denied_response.status.code == http_status_pb2.TooManyRequests
    assert 1 <= int(retry_after["retry-after"]) <= 20


@pytest.mark.parametrize("caller", ["comms", "operator", "stranger"])
async def test_only_envoy_may_check(
    check_as: Callable[[str], CheckStub], caller: str
) -> None:
    error = await rpc_error(check_as(caller).Check(check_request()))

    assert error.code() == grpc.StatusCode.PERMISSION_DENIED


def test_rate_limiter_refills_evenly() -> None:
    now = [100.0]
    limiter = RateLimiter(monotonic=lambda: now[0])

    first = [limiter.try_acquire("k", 2) for _ in range(2)]
    blocked = limiter.try_acquire("k", 2)
    now[0] += 30.0
    refilled = limiter.try_acquire("k", 2)
    blocked_again = limiter.try_acquire("k", 2)

    assert first == [0.0, 0.0]
    assert blocked == pytest.approx(30.0)
    assert refilled == 0.0
    assert blocked_again == pytest.approx(30.0)


def test_rate_limiter_keeps_keys_apart() -> None:
    limiter = RateLimiter(monotonic=lambda: 0.0)

    limiter.try_acquire("a", 1)

    assert limiter.try_acquire("a", 1) > 0
    assert limiter.try_acquire("b", 1) == 0.0


def test_rate_limiter_never_stores_more_than_a_minute() -> None:
    now = [0.0]
    limiter = RateLimiter(monotonic=lambda: now[0])
    limiter.try_acquire("k", 2)
    now[0] += 3600.0

    granted = [limiter.try_acquire("k", 2) for _ in range(3)]

    assert granted[:2] == [0.0, 0.0]
    assert granted[2] > 0


async def test_token_of_live_session_allowed_without_headers(
    check_as: Callable[[str], CheckStub],
    operator: user_pb2_grpc.UserServiceStub,
    connect: Callable[[str], user_pb2_grpc.UserServiceStub],
) -> None:
    claims, _ = await sign_in_claims(operator, connect("envoy"))

    response = await check_as("envoy").Check(token_check_request(claims))

    assert response.status.code == code_pb2.OK
    assert headers_of(response) == {}
    assert "role" not in response.dynamic_metadata


async def test_token_of_signed_out_session_denied(
    check_as: Callable[[str], CheckStub],
    operator: user_pb2_grpc.UserServiceStub,
    connect: Callable[[str], user_pb2_grpc.UserServiceStub],
) -> None:
    envoy = connect("envoy")
    claims, refresh_token = await sign_in_claims(operator, envoy)
    check = check_as("envoy")
    before = await check.Check(token_check_request(claims))
    await envoy.SignOut(user_pb2.SignOutRequest(refresh_token=refresh_token))

    response = await check.Check(token_check_request(claims))

    assert before.status.code == code_pb2.OK
    assert response.status.code == code_pb2.UNAUTHENTICATED
    assert response.denied_response.status.code == http_status_pb2.Unauthorized
    assert "signed out or revoked" in response.denied_response.body


@pytest.mark.parametrize(
    "sid", ["no-such-session", "", None], ids=["unknown", "empty", "missing"]
)
async def test_token_without_live_session_denied(
    check_as: Callable[[str], CheckStub], sid: str | None
) -> None:
    claims: dict[str, object] = {"sub": "admin@ext-authz.test", "role": "admin"}
    if sid is not None:
        claims["sid"] = sid

    response = await check_as("envoy").Check(token_check_request(claims))

    assert response.denied_response.status.code == http_status_pb2.Unauthorized


async def test_token_check_ignores_api_key(
    check_as: Callable[[str], CheckStub],
) -> None:
    request = token_check_request({"sid": "no-such-session"})
    request.attributes.request.http.headers["x-api-key"] = "rk_not_a_key"

    response = await check_as("envoy").Check(request)

    assert "signed out or revoked" in response.denied_response.body


def test_session_cache_keeps_live_answer_for_live_seconds() -> None:
    now = [0.0]
    cache = SessionCache(monotonic=lambda: now[0])
    cache.put("s1", live=True)

    now[0] += LIVE_SECONDS - 0.1
    fresh = cache.get("s1")
    now[0] += 0.2
    expired = cache.get("s1")

    assert fresh is True
    assert expired is None


def test_session_cache_keeps_revoked_answer() -> None:
    now = [0.0]
    cache = SessionCache(monotonic=lambda: now[0])
    cache.put("s1", live=True)
    cache.put("s1", live=False)

    now[0] += 365 * 24 * 3600.0

    assert cache.get("s1") is False


def test_session_cache_starts_again_when_full() -> None:
    cache = SessionCache(max_entries=2)
    cache.put("a", live=True)
    cache.put("b", live=False)

    cache.put("c", live=True)

    assert cache.get("a") is None
    assert cache.get("b") is None
    assert cache.get("c") is True
