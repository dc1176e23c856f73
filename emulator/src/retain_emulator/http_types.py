"""Request and response values passed between the HTTP handler and the routes."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs


@dataclass(frozen=True)
class ApiRequest:
    """One parsed HTTP request. Header lookups ignore case."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes = b""

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def query_params(self) -> dict[str, str]:
        return _first_values(self.query)

    def form(self) -> dict[str, str]:
        """Decode a form-encoded body. Invalid UTF-8 raises UnicodeDecodeError."""
        return _first_values(self.body.decode("utf-8"))

    def json_body(self) -> Any:
        """Decode a JSON body. An empty body decodes to None."""
        if not self.body.strip():
            return None
        return json.loads(self.body)


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


# The AT SDKs compare Content-Type with "application/json" exactly, so JSON replies
# of the AT API carry no charset parameter. JSON is UTF-8 by definition (RFC 8259).
JSON_CONTENT_TYPE = "application/json"


def json_response(status: int, payload: Any) -> Response:
    body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
    return Response(status, body, JSON_CONTENT_TYPE)


def text_response(
    status: int, text: str, headers: dict[str, str] | None = None
) -> Response:
    return Response(status, text.encode("utf-8"), headers=headers or {})


def _first_values(encoded: str) -> dict[str, str]:
    """Parse a query string or form body, keeping the first value of each field."""
    parsed = parse_qs(encoded, keep_blank_values=True)
    return {name: values[0] for name, values in parsed.items()}
