"""The gateway's routes: one per RPC in the role table, and the dashboard.

Envoy matches routes twice for a JSON call: first on the client's path, such
as /v1/campaigns, and again after the transcoder rewrites :path to
/<service>/<method> and clears the route cache. gRPC and gRPC-web calls
carry the gRPC path from the start. The auth filters and the body size limit
run after the transcoder, so they see the second route.

Before transcoding, routes built from the ``google.api.http`` rules reject a
query parameter that names a field of the path, because the transcoder would
set the field twice and the query value would win. ``GET /openapi.json``
returns the OpenAPI document without credentials.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.api import annotations_pb2
from google.protobuf import descriptor_pb2

from retain_cli import envoy_auth, gateway_access

# The cluster of the routes that only exist before transcoding, which has no
# endpoints.
UNROUTED_CLUSTER = "unrouted"

# The cluster of the dashboard's static file server.
DASHBOARD_CLUSTER = "dashboard"

# Path prefixes of the JSON API, which the transcoder serves.
API_PREFIXES = ("/v1/", "/callbacks/")

# The path of the OpenAPI document, served without credentials.
OPENAPI_PATH = "/openapi.json"
# Envoy refuses a direct response body over its route configuration's limit,
# 4 KiB unless set. docs/openapi.json is about 170 KiB.
MAX_DIRECT_RESPONSE_BYTES = 1024 * 1024

BUFFER_FILTER = "envoy.filters.http.buffer"
TRANSCODER_FILTER = "envoy.filters.http.grpc_json_transcoder"
# The transcoder copies the client's path into this header when it rewrites
# :path, so the header marks transcoded requests. A gRPC client that sends it
# only makes Envoy buffer its own call.
ORIGINAL_PATH_HEADER = "x-envoy-original-path"

# Headers that carry credentials. The auth filters read them before the
# router drops them, so the services and the file server never see them.
CREDENTIAL_HEADERS = ("authorization", envoy_auth.API_KEY_HEADER)

_TYPE_PREFIX = "type.googleapis.com/"


@dataclass(frozen=True)
class HttpRule:
    """The ``google.api.http`` rule of one RPC, from the descriptor set."""

    service: str  # full gRPC service name, such as retain.user.v1.UserService
    method: str  # RPC name, such as GetCustomer
    http_method: str  # GET, POST, PUT, PATCH or DELETE
    template: str  # path template, such as /v1/customers/{customer_id}
    body: str  # "" for no body, "*" for the whole request, else a field name
    input_type: str  # full message name without the leading dot
    output_type: str

    @property
    def path_fields(self) -> list[str]:
        """Return the request fields that the path template sets, in order."""
        return [match.split("=")[0] for match in _VARIABLE.findall(self.template)]


# A variable of a path template: {field} or {field=pattern}.
_VARIABLE = re.compile(r"\{([^}]+)\}")


def read_http_rules(descriptor_set: Path) -> list[HttpRule]:
    """Return the HTTP rules of every RPC in a descriptor set, in file order."""
    files = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set.read_bytes())
    rules = []
    for file in files.file:
        for service in file.service:
            for method in service.method:
                if method.options.HasExtension(annotations_pb2.http):
                    rule = method.options.Extensions[annotations_pb2.http]
                    rules.append(
                        _http_rule(f"{file.package}.{service.name}", method, rule)
                    )
    return rules


def _http_rule(service: str, method: Any, rule: Any) -> HttpRule:
    pattern = rule.WhichOneof("pattern")
    if pattern == "custom":
        raise ValueError(
            f"{service}/{method.name}: custom HTTP methods are unsupported"
        )
    return HttpRule(
        service=service,
        method=method.name,
        http_method=pattern.upper(),
        template=getattr(rule, pattern),
        body=rule.body,
        input_type=method.input_type.lstrip("."),
        output_type=method.output_type.lstrip("."),
    )


def json_name(field_path: str) -> str:
    """Return the lowerCamelCase JSON name of a snake_case field path."""
    return ".".join(
        re.sub(r"_([a-z0-9])", lambda m: m.group(1).upper(), part)
        for part in field_path.split(".")
    )


@dataclass(frozen=True)
class RouteOptions:
    """Inputs of the routes: a cluster per gRPC service, a timeout, CORS
    origins, whether a dashboard cluster exists, the HTTP rules of the
    descriptor set and the OpenAPI document to serve, if any."""

    clusters: Mapping[str, str]
    timeout: str
    cors_origin_regex: str
    dashboard: bool
    http_rules: Sequence[HttpRule] = ()
    openapi_document: Path | None = None


def route_config(options: RouteOptions) -> dict[str, Any]:
    """Build the route configuration of the public listener."""
    routes = [
        *_method_routes(options),
        *_unknown_method_routes(),
        *_path_field_query_routes(options.http_rules),
        *_openapi_routes(options.openapi_document),
        *_before_transcoding_routes(options.dashboard),
    ]
    return {
        "name": "retain",
        "max_direct_response_body_size_bytes": MAX_DIRECT_RESPONSE_BYTES,
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
    # Two routes per RPC in the role table, so an RPC missing from it (a
    # mesh-only one such as GetContacts) matches none of these. The first
    # matches transcoded JSON calls, whose gRPC message the buffer filter
    # limits to the services' maximum message size. The second matches gRPC and
    # gRPC-web calls, which the buffer filter must not buffer, because their
    # streams may run longer than one message.
    routes = []
    for service, method, _ in gateway_access.gateway_methods():
        path = gateway_access.grpc_path(service, method)
        forward = {"cluster": options.clusters[service], "timeout": options.timeout}
        public = gateway_access.is_public(service, method)
        auth = envoy_auth.auth_disabled() if public else {}
        transcoded = {"name": ORIGINAL_PATH_HEADER, "present_match": True}
        routes.append(
            {
                "match": {"path": path, "headers": [transcoded]},
                "route": forward,
                **({"typed_per_filter_config": auth} if auth else {}),
            }
        )
        routes.append(
            {
                "match": {"path": path},
                "route": forward,
                "typed_per_filter_config": {**auth, **_buffer_disabled()},
            }
        )
    return routes


def _buffer_disabled() -> dict[str, Any]:
    return {
        BUFFER_FILTER: {
            "@type": _TYPE_PREFIX
            + "envoy.extensions.filters.http.buffer.v3.BufferPerRoute",
            "disabled": True,
        }
    }


def _transcoder_disabled() -> dict[str, Any]:
    return {
        TRANSCODER_FILTER: {
            "@type": _TYPE_PREFIX + "envoy.config.route.v3.FilterConfig",
            "disabled": True,
        }
    }


def _path_field_query_routes(rules: Sequence[HttpRule]) -> list[dict[str, Any]]:
    # The transcoder binds path variables, then query parameters, into the
    # request, so GET /v1/customers/1?customerId=2 would ask for customer 2.
    # These routes match such requests before transcoding and reply 400.
    # The transcoder accepts a field under its proto and its JSON name.
    routes = []
    for rule in rules:
        for field in rule.path_fields:
            for name in dict.fromkeys([json_name(field), field]):
                routes.append(_query_collision_route(rule, field, name))
    return routes


def _query_collision_route(rule: HttpRule, field: str, name: str) -> dict[str, Any]:
    method = {"name": ":method", "string_match": {"exact": rule.http_method}}
    message = (
        f'query parameter "{name}" sets the field {field}, which the path '
        f"{rule.template} already sets; remove it from the query"
    )
    return {
        "match": {
            "safe_regex": {"regex": _template_regex(rule.template)},
            "headers": [method],
            "query_parameters": [{"name": name, "present_match": True}],
        },
        "direct_response": {"status": 400, "body": {"inline_string": message}},
        "typed_per_filter_config": {
            **envoy_auth.auth_disabled(),
            **_transcoder_disabled(),
        },
    }


def _template_regex(template: str) -> str:
    # A variable {field} or {field=*} matches one path segment. Envoy
    # matches the regex against the path without its query.
    parts = _VARIABLE.split(template)
    regex = []
    for index, part in enumerate(parts):
        if index % 2 == 0:
            regex.append(re.escape(part))
        elif part.partition("=")[2] in ("", "*"):
            regex.append("[^/]+")
        else:
            raise ValueError(f"path template {template}: {{{part}}} is unsupported")
    return "".join(regex)


def _openapi_routes(document: Path | None) -> list[dict[str, Any]]:
    # Envoy reads the file once, when it loads the configuration.
    if document is None:
        return []
    read_method = {
        "name": ":method",
        "string_match": {"safe_regex": {"regex": "GET|HEAD"}},
    }
    return [
        {
            "match": {"path": OPENAPI_PATH, "headers": [read_method]},
            "direct_response": {
                "status": 200,
                "body": {"filename": str(document)},
            },
            "response_headers_to_add": [
                {
                    "header": {"key": "content-type", "value": "application/json"},
                    "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                }
            ],
            "typed_per_filter_config": {
                **envoy_auth.auth_disabled(),
                **_transcoder_disabled(),
            },
        }
    ]


def _unknown_method_routes() -> list[dict[str, Any]]:
    # Any other path of a Retain service, and any other gRPC or gRPC-web
    # call, gets a 404, which Envoy sends to gRPC clients as UNIMPLEMENTED.
    # The router sends it, so the auth filters are off here, or they would
    # reply with 401 or 403 first. These routes forward nothing.
    not_found: dict[str, Any] = {
        "direct_response": {"status": 404},
        "typed_per_filter_config": {
            **envoy_auth.auth_disabled(),
            **_buffer_disabled(),
        },
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
    read_method = {
        "name": ":method",
        "string_match": {"safe_regex": {"regex": "GET|HEAD"}},
    }
    return {
        "match": {"prefix": "/", "headers": [read_method]},
        "route": {"cluster": DASHBOARD_CLUSTER, "timeout": "30s"},
        "typed_per_filter_config": {
            **envoy_auth.auth_disabled(),
            **_transcoder_disabled(),
        },
    }


def _original_path_without_query() -> dict[str, Any]:
    # The transcoder copies the client's path, query included, into
    # x-envoy-original-path, which reaches the services as gRPC metadata.
    # The router rewrites it without the query, so the callback secret
    # reaches the comms service only in the request's secret field.
    return {
        "header": {"key": ORIGINAL_PATH_HEADER, "value": "%PATH(NQ:ORIG)%"},
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
