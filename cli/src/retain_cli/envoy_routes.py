"""The gateway's routes: one per RPC in the role table, and the dashboard.

Envoy matches routes twice for a JSON call: first on the client's path, such
as /v1/campaigns, and again after the transcoder rewrites :path to
/<service>/<method> and clears the route cache. gRPC and gRPC-web calls
carry the gRPC path from the start. The auth filters run after the
transcoder, so they see the second route.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from retain_cli import envoy_auth, gateway_access

# The cluster of the routes that only exist before transcoding, which has no
# endpoints.
UNROUTED_CLUSTER = "unrouted"

# The cluster of the dashboard's static file server.
DASHBOARD_CLUSTER = "dashboard"

# Path prefixes of the JSON API, which the transcoder serves.
API_PREFIXES = ("/v1/", "/callbacks/")

# Headers that carry credentials. The auth filters read them before the
# router drops them, so the services and the file server never see them.
CREDENTIAL_HEADERS = ("authorization", envoy_auth.API_KEY_HEADER)

_TYPE_PREFIX = "type.googleapis.com/"


@dataclass(frozen=True)
class RouteOptions:
    """Inputs of the routes: a cluster per gRPC service, a timeout, CORS
    origins and whether a dashboard cluster exists."""

    clusters: Mapping[str, str]
    timeout: str
    cors_origin_regex: str
    dashboard: bool


def route_config(options: RouteOptions) -> dict[str, Any]:
    """Build the route configuration of the public listener."""
    routes = [
        *_method_routes(options),
        *_unknown_method_routes(),
        *_before_transcoding_routes(options.dashboard),
    ]
    return {
        "name": "retain",
        "virtual_hosts": [
            {
                "name": "retain",
                "domains": ["*"],
                "typed_per_filter_config": {
                    "envoy.filters.http.cors": _cors_policy(options.cors_origin_regex)
                },
                "request_headers_to_add": [_original_path_without_query()],
                "request_headers_to_remove": list(CREDENTIAL_HEADERS),
                "routes": routes,
            }
        ],
    }


def _method_routes(options: RouteOptions) -> list[dict[str, Any]]:
    # One route per RPC in the role table, so an RPC missing from it (a
    # mesh-only one such as GetContacts) matches none of these.
    routes = []
    for service, method, _ in gateway_access.gateway_methods():
        route: dict[str, Any] = {
            "match": {"path": gateway_access.grpc_path(service, method)},
            "route": {"cluster": options.clusters[service], "timeout": options.timeout},
        }
        if gateway_access.is_public(service, method):
            route["typed_per_filter_config"] = envoy_auth.auth_disabled()
        routes.append(route)
    return routes


def _unknown_method_routes() -> list[dict[str, Any]]:
    # Any other path of a Retain service, and any other gRPC or gRPC-web
    # call, gets a 404, which Envoy sends to gRPC clients as UNIMPLEMENTED.
    # The router sends it, so the auth filters are off here, or they would
    # reply with 401 or 403 first. These routes forward nothing.
    not_found: dict[str, Any] = {
        "direct_response": {"status": 404},
        "typed_per_filter_config": envoy_auth.auth_disabled(),
    }
    unknown_retain_method = [
        {"match": {"prefix": f"/{service}/"}, **not_found}
        for service in gateway_access.GATEWAY_ACCESS
    ]
    grpc_content_type = {
        "name": "content-type",
        "string_match": {"prefix": "application/grpc"},
    }
    unknown_grpc_method = {
        "match": {"prefix": "/", "headers": [grpc_content_type]},
        **not_found,
    }
    return [*unknown_retain_method, unknown_grpc_method]


def _before_transcoding_routes(dashboard: bool) -> list[dict[str, Any]]:
    # JSON API requests match these routes before transcoding. They route to
    # a cluster because the CORS filter skips requests whose route is a
    # direct response, and preflights for JSON paths such as /v1/campaigns
    # need CORS. The transcoder moves each such request to a method route or
    # rejects it, so none is forwarded to this cluster.
    to_transcoder = {"cluster": UNROUTED_CLUSTER}
    if not dashboard:
        return [{"match": {"prefix": "/"}, "route": to_transcoder}]
    api_routes = [
        {"match": {"prefix": prefix}, "route": to_transcoder} for prefix in API_PREFIXES
    ]
    return [
        *api_routes,
        _dashboard_route(),
        {"match": {"prefix": "/"}, "route": to_transcoder},
    ]


def _dashboard_route() -> dict[str, Any]:
    # Reads of any other path go to the file server, which returns index.html
    # for paths of the dashboard's own router. The transcoder would reject
    # them as unknown methods, so it is off here, like the auth filters.
    transcoder_off = {
        "@type": _TYPE_PREFIX + "envoy.config.route.v3.FilterConfig",
        "disabled": True,
    }
    read_method = {
        "name": ":method",
        "string_match": {"safe_regex": {"regex": "GET|HEAD"}},
    }
    return {
        "match": {"prefix": "/", "headers": [read_method]},
        "route": {"cluster": DASHBOARD_CLUSTER, "timeout": "30s"},
        "typed_per_filter_config": {
            **envoy_auth.auth_disabled(),
            "envoy.filters.http.grpc_json_transcoder": transcoder_off,
        },
    }


def _original_path_without_query() -> dict[str, Any]:
    # The transcoder copies the client's path, query included, into
    # x-envoy-original-path, which reaches the services as gRPC metadata.
    # The router rewrites it without the query, so the callback secret
    # reaches the comms service only in the request's secret field.
    return {
        "header": {"key": "x-envoy-original-path", "value": "%PATH(NQ:ORIG)%"},
        "append_action": "OVERWRITE_IF_EXISTS",
    }


def _cors_policy(origin_regex: str) -> dict[str, Any]:
    return {
        "@type": _TYPE_PREFIX + "envoy.extensions.filters.http.cors.v3.CorsPolicy",
        "allow_origin_string_match": [{"safe_regex": {"regex": origin_regex}}],
        "allow_methods": "GET, POST, PUT, PATCH, DELETE, OPTIONS",
        "allow_headers": (
            "authorization, content-type, x-api-key, "
            "x-grpc-web, x-user-agent, grpc-timeout"
        ),
        "expose_headers": "grpc-status, grpc-message, grpc-status-details-bin",
        "max_age": "600",
    }
