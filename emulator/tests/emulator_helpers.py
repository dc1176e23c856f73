"""Test helpers: AT credentials, a send helper, polling and a callback receiver."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import httpx

USERNAME = "sandbox"
API_KEY = "test-api-key-5f2b9c"
AT_HEADERS = {"apiKey": API_KEY, "Accept": "application/json"}


def wait_until(
    predicate: Callable[[], bool], timeout: float = 5.0, interval: float = 0.01
) -> bool:
    """Poll `predicate` until it is true. Return False if `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


class CallbackReceiver:
    """A loopback HTTP server that records delivery-report POSTs.

    The first `fail_first` POSTs get HTTP `failure_status` and are recorded in
    `failed_posts` only.
    """

    def __init__(self, fail_first: int = 0, failure_status: int = 500) -> None:
        self.reports: list[dict[str, str]] = []
        self.content_types: list[str] = []
        self.failed_posts = 0
        self._fail_first = fail_first
        self._failure_status = failure_status
        self._condition = threading.Condition()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            daemon=True,
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/dlr"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def wait_for(self, count: int, timeout: float = 5.0) -> list[dict[str, str]]:
        """Wait until `count` reports arrived and return a copy of all of them."""
        with self._condition:
            self._condition.wait_for(lambda: len(self.reports) >= count, timeout)
            return list(self.reports)

    def _record(self, body: bytes, content_type: str) -> int:
        with self._condition:
            if self.failed_posts < self._fail_first:
                self.failed_posts += 1
                return self._failure_status
            parsed = parse_qs(body.decode(), keep_blank_values=True)
            self.reports.append({name: values[0] for name, values in parsed.items()})
            self.content_types.append(content_type)
            self._condition.notify_all()
            return 200

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                content_type = self.headers.get("Content-Type", "")
                status = receiver._record(body, content_type)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


def send_sms(
    client: httpx.Client,
    to: str,
    message: str = "Your order has shipped",
    headers: dict[str, str] | None = None,
    **fields: str,
) -> httpx.Response:
    """POST /version1/messaging the way the AT SDKs do."""
    data = {"username": USERNAME, "to": to, "message": message, **fields}
    return client.post(
        "/version1/messaging",
        data=data,
        headers=AT_HEADERS if headers is None else headers,
    )


def recipients_of(response: httpx.Response) -> list[dict[str, Any]]:
    return response.json()["SMSMessageData"]["Recipients"]
