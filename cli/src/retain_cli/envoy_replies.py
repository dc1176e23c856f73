"""The JSON bodies of Envoy's own error replies: a gRPC code and what to do.

Envoy answers some requests itself, for example a 400 for an unknown query
parameter, a 401 from jwt_authn, a 403 from RBAC or a 413 for a body over
the limit. For REST clients those replies get a JSON body in the shape the
services' errors have.
"""

from __future__ import annotations

from typing import Any

from retain_runtime.credentials import MAX_MESSAGE_BYTES

# The google.rpc.Code in the JSON body of Envoy's own replies, by HTTP
# status: the reverse of the mapping in google/rpc/code.proto. A body over
# the size limit (413) gets RESOURCE_EXHAUSTED, which gRPC uses for a
# message over its limit. Any other error status gets UNKNOWN (2).
LOCAL_REPLY_CODES = {
    400: 3,  # INVALID_ARGUMENT
    401: 16,  # UNAUTHENTICATED
    403: 7,  # PERMISSION_DENIED
    404: 5,  # NOT_FOUND
    413: 8,  # RESOURCE_EXHAUSTED
    429: 8,  # RESOURCE_EXHAUSTED
    500: 13,  # INTERNAL
    501: 12,  # UNIMPLEMENTED
    502: 14,  # UNAVAILABLE
    503: 14,  # UNAVAILABLE
    504: 4,  # DEADLINE_EXCEEDED
}
UNKNOWN_CODE = 2

# Hints on what to do next, by HTTP status, appended to the message of
# Envoy's own JSON error replies. A 401 comes from jwt_authn ("Jwt is
# expired") or ext_authz, a 403 from rbac ("RBAC: access denied") and a 413
# from the buffer or transcoder filter ("Payload Too Large"). A hint must not
# contain "%", which would start a format command.
# NOTE: jwt_authn also replies 403 to a token for another audience, which
# Retain's sign-in never issues, and gets the role hint all the same.
LOCAL_REPLY_HINTS = {
    401: (
        "; send a valid access token (Authorization: Bearer, from "
        "POST /v1/auth:signIn or /v1/auth:refresh) or an API key (x-api-key)"
    ),
    403: "; your role may not call this method",
    413: f"; the limit is {MAX_MESSAGE_BYTES // 2**20} MiB per request message",
}


def local_reply_config() -> dict[str, Any]:
    """Return the HTTP connection manager's local_reply_config."""
    # Envoy's own replies get a JSON body, for example a 400 for an unknown
    # query parameter, a 413 for a body over the limit or a 503 for an
    # unreachable service. gRPC and gRPC-web calls are left out, because their
    # clients read the text from grpc-message. The first mapper that matches
    # a reply sets its body.
    no_content_type = _header_filter({"name": "content-type", "present_match": False})
    not_grpc = _header_filter(
        {
            "name": "content-type",
            "string_match": {"prefix": "application/grpc"},
            "invert_match": True,
        }
    )
    # Envoy classifies a request as gRPC before the transcoder rewrites its
    # content-type, so its replies to transcoded calls are plain HTTP too.
    transcoded = _header_filter(
        {"name": "x-envoy-original-path", "present_match": True}
    )

    # A matcher with invert_match fails on a missing header, so a request
    # without content-type needs its own matcher.
    json_clients = {"or_filter": {"filters": [no_content_type, not_grpc, transcoded]}}
    mappers = [
        _json_reply_mapper(
            _and_status(json_clients, "EQ", status),
            code,
            LOCAL_REPLY_HINTS.get(status, ""),
        )
        for status, code in LOCAL_REPLY_CODES.items()
    ]
    # Direct responses are local replies too, so a 200 such as the OpenAPI
    # document must match no mapper.
    any_error = _and_status(json_clients, "GE", 400)
    mappers.append(_json_reply_mapper(any_error, UNKNOWN_CODE))
    return {"mappers": mappers}


def _and_status(json_clients: dict[str, Any], op: str, status: int) -> dict[str, Any]:
    # Envoy requires a runtime key, which can override the status compared.
    status_matches = {
        "status_code_filter": {
            "comparison": {
                "op": op,
                "value": {
                    "default_value": status,
                    "runtime_key": f"retain.local_reply.{op.lower()}_{status}",
                },
            }
        }
    }
    return {"and_filter": {"filters": [json_clients, status_matches]}}


def _json_reply_mapper(
    reply_filter: dict[str, Any], code: int, hint: str = ""
) -> dict[str, Any]:
    return {
        "filter": reply_filter,
        "body_format_override": {
            "json_format": {
                "code": code,
                "httpStatus": "%RESPONSE_CODE%",
                "message": "%LOCAL_REPLY_BODY%" + hint,
            }
        },
    }


def _header_filter(matcher: dict[str, Any]) -> dict[str, Any]:
    return {"header_filter": {"header": matcher}}
