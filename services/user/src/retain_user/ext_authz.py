"""Envoy's external authorization (ext_authz over gRPC): sessions and API keys.

Envoy calls envoy.service.auth.v3.Authorization/Check for each request to an
RPC that needs credentials. When Envoy's jwt_authn filter verified an access
token, Check gets the token's claims as metadata_context and replies:

- 401 when the claims carry no sid or the session it names is signed out,
  revoked or unknown;
- OK otherwise, without headers, because jwt_authn already set the
  identity headers.

Otherwise Check reads the partner API key from ``x-api-key`` and replies:

- 401 when the header is missing or the key is unknown, malformed or revoked;
- 429 with Retry-After when the key used up its requests_per_minute;
- OK with x-retain-subject "api-key:<id>" and x-retain-role "partner" for
  the upstream service, and ``role: partner`` as dynamic metadata, which
  Envoy's RBAC filter matches against the RPCs partners may call.

A denial is a reply, not a gRPC error: Envoy sends its status and body to
the client and the request never reaches the service.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import (
    attribute_context_pb2,
    external_auth_pb2,
    external_auth_pb2_grpc,
)
from envoy.type.v3 import http_status_pb2
from google.protobuf import struct_pb2
from google.rpc import code_pb2, status_pb2
from retain_runtime.callers import ROLE_HEADER, SUBJECT_HEADER, CallPolicy

from retain_user.api_keys import ApiKeys
from retain_user.tokens import TokenIssuer

log = logging.getLogger(__name__)

SERVICE_NAME = "envoy.service.auth.v3.Authorization"
# Only Envoy calls Check.
POLICY = CallPolicy(SERVICE_NAME, {"Check": ["envoy"]})

API_KEY_HEADER = "x-api-key"
# The metadata namespace and key of the claims that Envoy's jwt_authn filter
# verified; retain_cli.envoy_auth sets both names.
JWT_NAMESPACE = "envoy.filters.http.jwt_authn"
JWT_PAYLOAD_KEY = "jwt_payload"
PARTNER_ROLE = "partner"
SUBJECT_PREFIX = "api-key:"

MISSING_CREDENTIALS = (
    "this RPC needs credentials: send an access token as "
    "'Authorization: Bearer <token>' or a partner API key in x-api-key"
)
INVALID_KEY = "the API key is invalid or revoked; ask an admin for a new key"
REVOKED_SESSION = "the access token's session is signed out or revoked; sign in again"
NO_SESSION = "the access token has no session id (sid claim); sign in again"


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """A token bucket per API key: requests_per_minute tokens, refilled evenly.

    A key may burst up to its whole minute's allowance, then gets one request
    every 60 / requests_per_minute seconds.
    """

    # NOTE: the buckets live in this process, so each replica of the user
    # service grants a key its full rate. A shared limit across replicas
    # needs Redis or Envoy's rate limit service.

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._buckets: dict[str, _Bucket] = {}

    def try_acquire(self, key_id: str, requests_per_minute: int) -> float:
        """Take one token; return 0 on success, else seconds until the next."""
        now = self._monotonic()
        capacity = float(requests_per_minute)
        per_second = requests_per_minute / 60.0
        bucket = self._buckets.setdefault(key_id, _Bucket(capacity, now))
        elapsed = max(0.0, now - bucket.updated)
        bucket.tokens = min(capacity, bucket.tokens + elapsed * per_second)
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / per_second


class GatewayAuthorization(external_auth_pb2_grpc.AuthorizationServicer):
    """Check for Envoy's ext_authz filter: the session of an access token,
    or an API key and its rate."""

    def __init__(
        self, tokens: TokenIssuer, api_keys: ApiKeys, limiter: RateLimiter
    ) -> None:
        self._tokens = tokens
        self._api_keys = api_keys
        self._limiter = limiter

    async def Check(
        self,
        request: external_auth_pb2.CheckRequest,
        context: grpc.aio.ServicerContext,
    ) -> external_auth_pb2.CheckResponse:
        http = request.attributes.request.http
        claims = _token_claims(request)
        if claims is not None:
            return await self._check_session(claims, http.path)
        return await self._check_api_key(http)

    async def _check_session(
        self, claims: struct_pb2.Struct, path: str
    ) -> external_auth_pb2.CheckResponse:
        sid = claims.fields.get("sid")
        if sid is None or not sid.string_value:
            log.info("Rejected %s with an access token without sid", path)
            return _denied(http_status_pb2.Unauthorized, NO_SESSION)
        session_id = sid.string_value
        if not await self._tokens.session_live(session_id):
            log.info("Rejected %s with a token of revoked session %s", path, session_id)
            return _denied(http_status_pb2.Unauthorized, REVOKED_SESSION)
        return external_auth_pb2.CheckResponse(
            status=status_pb2.Status(code=code_pb2.OK),
            ok_response=external_auth_pb2.OkHttpResponse(),
        )

    async def _check_api_key(
        self, http: attribute_context_pb2.AttributeContext.HttpRequest
    ) -> external_auth_pb2.CheckResponse:
        secret = http.headers.get(API_KEY_HEADER, "")
        if not secret:
            log.info("Rejected %s %s without credentials", http.method, http.path)
            return _denied(http_status_pb2.Unauthorized, MISSING_CREDENTIALS)

        api_key = await self._api_keys.verify_api_key(secret)
        if api_key is None:
            log.info("Rejected %s with an invalid or revoked API key", http.path)
            return _denied(http_status_pb2.Unauthorized, INVALID_KEY)

        key_id = api_key.api_key_id
        wait = self._limiter.try_acquire(key_id, api_key.requests_per_minute)
        if wait > 0:
            log.info("API key %s is over its rate; rejected %s", key_id, http.path)
            return _over_rate(api_key.requests_per_minute, wait)
        return _allowed(key_id)


def _token_claims(
    request: external_auth_pb2.CheckRequest,
) -> struct_pb2.Struct | None:
    """Return the claims that jwt_authn verified, or None without a token."""
    metadata = request.attributes.metadata_context.filter_metadata
    if JWT_NAMESPACE not in metadata:
        return None
    payload = metadata[JWT_NAMESPACE].fields.get(JWT_PAYLOAD_KEY)
    if payload is None or payload.WhichOneof("kind") != "struct_value":
        return None
    return payload.struct_value


def _allowed(key_id: str) -> external_auth_pb2.CheckResponse:
    headers = [
        _header(SUBJECT_HEADER, SUBJECT_PREFIX + key_id),
        _header(ROLE_HEADER, PARTNER_ROLE),
    ]
    metadata = struct_pb2.Struct()
    metadata.update({"role": PARTNER_ROLE, "api_key_id": key_id})
    return external_auth_pb2.CheckResponse(
        status=status_pb2.Status(code=code_pb2.OK),
        ok_response=external_auth_pb2.OkHttpResponse(headers=headers),
        dynamic_metadata=metadata,
    )


def _over_rate(
    requests_per_minute: int, wait: float
) -> external_auth_pb2.CheckResponse:
    message = (
        f"the API key is over its limit of {requests_per_minute} requests per "
        f"minute; retry after {math.ceil(wait)} s"
    )
    retry_after = _header("retry-after", str(math.ceil(wait)))
    return _denied(http_status_pb2.TooManyRequests, message, [retry_after])


def _denied(
    status: int, message: str, headers: list[base_pb2.HeaderValueOption] | None = None
) -> external_auth_pb2.CheckResponse:
    # google.rpc codes for the log and stats; the HTTP status is what the
    # client gets.
    code = code_pb2.UNAUTHENTICATED
    if status == http_status_pb2.TooManyRequests:
        code = code_pb2.RESOURCE_EXHAUSTED
    return external_auth_pb2.CheckResponse(
        status=status_pb2.Status(code=code, message=message),
        denied_response=external_auth_pb2.DeniedHttpResponse(
            status=http_status_pb2.HttpStatus(code=status),
            headers=headers or [],
            body=message,
        ),
    )


def _header(key: str, value: str) -> base_pb2.HeaderValueOption:
    return base_pb2.HeaderValueOption(
        header=base_pb2.HeaderValue(key=key, value=value),
        append_action=base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD,
    )
