"""The gateway's authentication and authorization filters for Envoy 1.40.

Three HTTP filters run after the transcoder, so each sees the gRPC path of a
transcoded call:

1. ``jwt_authn`` verifies an ``Authorization: Bearer`` access token against
   the user service's JWKS (signature, iss, aud, exp). It rejects an invalid
   token with 401, or 403 when only the audience is wrong, and lets a
   request without one through. It stores the verified claims as dynamic
   metadata and copies sub and role into the identity headers.
2. ``ext_authz`` sends those claims, if any, and ``x-api-key`` to the user
   service's Check. For a verified token, Check replies 401 when the
   token's session (its sid claim) is signed out or revoked, and OK
   otherwise. Without one, Check verifies the API key, applies the key's
   rate and replies 401, 429 or OK with the identity headers and
   ``role: partner`` metadata. So a request without any credentials gets a
   401 here. While the user service is unreachable, every request that
   needs credentials gets a 503.
3. ``rbac`` allows a request only when the role in that metadata may call the
   gRPC path, per retain_cli.gateway_access, and replies 403 otherwise.

Public routes (sign-in, the callbacks, the dashboard's files) turn the three
filters off with their own per-route configs, which Envoy reads for the
route chosen after transcoding.

Envoy fetches the JWKS over HTTP, so an internal listener (a user-space
socket, no port) transcodes ``GET /v1/auth/keys`` to GetSigningKeys on the
user service.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from retain_cli import gateway_access
from retain_cli.gateway_access import ADMIN, ANALYST, PARTNER

JWT_FILTER = "envoy.filters.http.jwt_authn"
EXT_AUTHZ_FILTER = "envoy.filters.http.ext_authz"
RBAC_FILTER = "envoy.filters.http.rbac"

# The iss and aud claims of access tokens; retain_user.tokens sets them.
ISSUER = "retain-user"
AUDIENCE = "retain"

JWT_PROVIDER = "retain_user"
# jwt_authn stores the verified claims under this key of its metadata.
JWT_PAYLOAD_KEY = "jwt_payload"
# The user service's Check returns the caller's role under this key.
EXT_AUTHZ_ROLE_KEY = "role"

JWKS_LISTENER = "jwks_internal"
JWKS_CLUSTER = "jwks"
# The host part is only a name in the request, which the internal listener
# accepts for any domain.
JWKS_URI = "http://jwks.internal/v1/auth/keys"
# A new signing key signs one hour after it is published (PUBLISH_DELAY in
# retain_user.signing_keys), so the cache must expire well within the hour.
JWKS_CACHE_SECONDS = 300

# Timeout of one Check call to the user service, which reads the key or the
# session from PostgreSQL.
EXT_AUTHZ_TIMEOUT = "2s"

API_KEY_HEADER = "x-api-key"

_TYPE_PREFIX = "type.googleapis.com/"
_JWT_TYPE = "envoy.extensions.filters.http.jwt_authn.v3."
_EXT_AUTHZ_TYPE = "envoy.extensions.filters.http.ext_authz.v3."
_RBAC_TYPE = "envoy.extensions.filters.http.rbac.v3."


def _typed(type_name: str, **fields: Any) -> dict[str, Any]:
    return {"@type": _TYPE_PREFIX + type_name, **fields}


def auth_filters(identity_headers: tuple[str, str]) -> list[dict[str, Any]]:
    """Return the jwt_authn, ext_authz and rbac filters, in the order they run.

    identity_headers names the subject and role headers for the services.
    """
    return [
        {"name": JWT_FILTER, "typed_config": _jwt_authn(identity_headers)},
        {"name": EXT_AUTHZ_FILTER, "typed_config": _ext_authz()},
        {"name": RBAC_FILTER, "typed_config": _rbac()},
    ]


def auth_disabled() -> dict[str, Any]:
    """Return per-route configs that turn the three auth filters off."""
    return {
        JWT_FILTER: _typed(_JWT_TYPE + "PerRouteConfig", disabled=True),
        EXT_AUTHZ_FILTER: _typed(_EXT_AUTHZ_TYPE + "ExtAuthzPerRoute", disabled=True),
        # A per-route RBAC config without rules enforces nothing.
        RBAC_FILTER: _typed(_RBAC_TYPE + "RBACPerRoute"),
    }


# jwt_authn.

# Access tokens whose verified payload Envoy keeps; about one per signed-in
# admin session.
JWT_CACHE_SIZE = 1000


def _jwt_authn(identity_headers: tuple[str, str]) -> dict[str, Any]:
    subject_header, role_header = identity_headers
    provider = {
        "issuer": ISSUER,
        "audiences": [AUDIENCE],
        "require_expiration": True,
        "remote_jwks": _remote_jwks(),
        # The services get the verified claims as headers, never the token.
        "forward": False,
        "payload_in_metadata": JWT_PAYLOAD_KEY,
        # Verified tokens are kept until they expire, so a signature is checked
        # once per token rather than once per request. Revocation is checked
        # by ext_authz on every request, so the cache cannot keep one alive.
        "jwt_cache_config": {"jwt_cache_size": JWT_CACHE_SIZE},
        "claim_to_headers": [
            {"header_name": subject_header, "claim_name": "sub"},
            {"header_name": role_header, "claim_name": "role"},
        ],
    }
    # allow_missing: a token that is present must be valid, and a request
    # without one goes on to ext_authz for an API key.
    requirement = {
        "requires_any": {
            "requirements": [{"provider_name": JWT_PROVIDER}, {"allow_missing": {}}]
        }
    }
    return _typed(
        _JWT_TYPE + "JwtAuthentication",
        providers={JWT_PROVIDER: provider},
        rules=[{"match": {"prefix": "/"}, "requires": requirement}],
    )


def _remote_jwks() -> dict[str, Any]:
    # Each worker thread fetches the JWKS when a request first carries a
    # token, and again once its cache expires. A failed fetch gives that
    # request a 401, and the next request with a token fetches again.
    # async_fetch is left out because Envoy 1.40 runs it on the main thread,
    # which cannot connect to an internal listener. Every such fetch fails
    # with a connect error, and Envoy logs a warning at each retry.
    return {
        "http_uri": {"uri": JWKS_URI, "cluster": JWKS_CLUSTER, "timeout": "2s"},
        "cache_duration": f"{JWKS_CACHE_SECONDS}s",
    }


# ext_authz.


def _ext_authz() -> dict[str, Any]:
    # Check gets the claims that jwt_authn verified as metadata_context, so
    # it looks up the session without verifying the token again.
    return _typed(
        _EXT_AUTHZ_TYPE + "ExtAuthz",
        grpc_service={
            "envoy_grpc": {"cluster_name": "user"},
            "timeout": EXT_AUTHZ_TIMEOUT,
        },
        transport_api_version="V3",
        failure_mode_allow=False,
        status_on_error={"code": "ServiceUnavailable"},
        metadata_context_namespaces=[JWT_FILTER],
        # Check needs only the key; the path and method are always sent.
        allowed_headers={"patterns": [{"exact": API_KEY_HEADER}]},
    )


# RBAC.


def _rbac() -> dict[str, Any]:
    # A request matching no policy gets a 403. Admins and analysts are
    # recognised by the token's role claim, partners by Check's metadata.
    principals = {
        ADMIN: _metadata_principal(JWT_FILTER, [JWT_PAYLOAD_KEY, "role"], ADMIN),
        ANALYST: _metadata_principal(JWT_FILTER, [JWT_PAYLOAD_KEY, "role"], ANALYST),
        PARTNER: _metadata_principal(EXT_AUTHZ_FILTER, [EXT_AUTHZ_ROLE_KEY], PARTNER),
    }
    policies = {
        role: {
            "permissions": [_any_path(gateway_access.paths_for_role(role))],
            "principals": [principals[role]],
        }
        for role in gateway_access.ROLES
    }
    return _typed(_RBAC_TYPE + "RBAC", rules={"action": "ALLOW", "policies": policies})


def _metadata_principal(
    filter_name: str, path: list[str], value: str
) -> dict[str, Any]:
    # DYNAMIC: the metadata that filters set on this request.
    return {
        "sourced_metadata": {
            "metadata_matcher": {
                "filter": filter_name,
                "path": [{"key": key} for key in path],
                "value": {"string_match": {"exact": value}},
            },
            "metadata_source": "DYNAMIC",
        }
    }


def _any_path(paths: list[str]) -> dict[str, Any]:
    return {
        "or_rules": {
            "rules": [{"url_path": {"path": {"exact": path}}} for path in paths]
        }
    }


# The internal listener that serves the JWKS to jwt_authn.


def internal_listener_extension() -> dict[str, Any]:
    """Return the bootstrap extension that internal listeners need."""
    return {
        "name": "envoy.bootstrap.internal_listener",
        "typed_config": _typed(
            "envoy.extensions.bootstrap.internal_listener.v3.InternalListener"
        ),
    }


def jwks_listener(descriptor_set: Path, hcm_type: str) -> dict[str, Any]:
    """Return the internal listener that transcodes the JWKS request.

    Only GET /v1/auth/keys is transcoded, to GetSigningKeys on the user
    cluster; every other request gets a 404.
    """
    get_signing_keys = gateway_access.grpc_path(
        "retain.user.v1.UserService", "GetSigningKeys"
    )
    routes = [
        {
            "match": {"path": get_signing_keys},
            "route": {"cluster": "user", "timeout": "5s"},
        },
        # Matches before transcoding; the transcoder then moves the request
        # to the route above or rejects it.
        {"match": {"prefix": "/"}, "direct_response": {"status": 404}},
    ]
    transcoder = _typed(
        "envoy.extensions.filters.http.grpc_json_transcoder.v3.GrpcJsonTranscoder",
        proto_descriptor=str(descriptor_set),
        services=["retain.user.v1.UserService"],
        request_validation_options={"reject_unknown_method": True},
    )
    manager = _typed(
        hcm_type,
        stat_prefix=JWKS_LISTENER,
        route_config={
            "name": JWKS_LISTENER,
            "virtual_hosts": [{"name": "jwks", "domains": ["*"], "routes": routes}],
        },
        http_filters=[
            {
                "name": "envoy.filters.http.grpc_json_transcoder",
                "typed_config": transcoder,
            },
            {
                "name": "envoy.filters.http.router",
                "typed_config": _typed(
                    "envoy.extensions.filters.http.router.v3.Router"
                ),
            },
        ],
    )
    return {
        "name": JWKS_LISTENER,
        "internal_listener": {},
        "filter_chains": [
            {
                "filters": [
                    {
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": manager,
                    }
                ]
            }
        ],
    }


def jwks_cluster() -> dict[str, Any]:
    """Return the cluster through which jwt_authn reaches the JWKS listener."""
    return {
        "name": JWKS_CLUSTER,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": JWKS_CLUSTER,
            "endpoints": [
                {
                    "lb_endpoints": [
                        {
                            "endpoint": {
                                "address": {
                                    "envoy_internal_address": {
                                        "server_listener_name": JWKS_LISTENER
                                    }
                                }
                            }
                        }
                    ]
                }
            ],
        },
    }
