"""The emulator server: a threaded HTTP/1.1 server with keep-alive on loopback.

AfricasTalkingEmulator owns the account state, the AT API routes, the control API,
the delivery-report workers and the voice callback thread, and runs the HTTP server
in a background thread.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import sys
import threading
from collections.abc import Iterable, Mapping
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

from retain_emulator.at_api import ENDPOINTS, AtApi
from retain_emulator.control import CONTROL_PREFIX, ControlApi
from retain_emulator.delivery import DeliveryPlan, DeliveryReporter, redact_url
from retain_emulator.http_types import ApiRequest, Response, text_response
from retain_emulator.state import DelayFault, EmulatorState, HttpFault, HttpFaultRate
from retain_emulator.voice import VoiceCalls
from retain_emulator.wire import KENYA_MOBILE_PATTERN

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024


class AfricasTalkingEmulator:
    """A loopback server that speaks AT's SMS and voice APIs for tests and local
    runs.

    Point an AT client at `base_url` with the same username and API key, and it
    behaves as against the real service. Faults and delivery reports are set through
    the constructor, the methods below, or the JSON control API under /_emulator.
    """

    def __init__(
        self,
        username: str,
        api_key: str,
        callback_url: str | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        balance: Decimal | str | float = "1000",
        currency: str = "KES",
        cost_per_segment: Decimal | str | float = "0.8000",
        sender_ids: Iterable[str] | None = None,
        number_pattern: str = KENYA_MOBILE_PATTERN,
        recipient_failures: Mapping[str, str | int] | None = None,
        failing_requests: int = 0,
        delayed_requests: int = 0,
        request_delay: float = 0.0,
        default_delivery_plan: DeliveryPlan | None = None,
        delivery_plans: Mapping[str, DeliveryPlan] | None = None,
        report_delay: float = 0.05,
        callback_attempts: int = 4,
        callback_backoff: float = 0.1,
        callback_timeout: float = 2.0,
        callback_workers: int = 4,
        voice_callback_url: str | None = None,
    ) -> None:
        """Create a stopped emulator. Call start() or use it as a context manager.

        `sender_ids` lists the accepted `from` values, and None accepts any.
        The first `failing_requests` send requests fail with HTTP 500, and the
        first `delayed_requests` send requests wait `request_delay` seconds.
        `report_delay` and the callback timings are in seconds. Placed calls
        POST their voice callbacks to `voice_callback_url`.
        """
        if not username:
            raise ValueError("username must not be empty")
        if not api_key:
            raise ValueError("api_key must not be empty")
        self._username = username
        self._api_key = api_key
        self._host = host
        self._port = port
        self.state = EmulatorState(
            balance=Decimal(str(balance)),
            currency=currency,
            cost_per_segment=Decimal(str(cost_per_segment)),
            number_pattern=number_pattern,
            sender_ids=sender_ids,
            default_plan=default_delivery_plan or DeliveryPlan(),
        )
        self.reporter = DeliveryReporter(
            callback_url,
            delay=report_delay,
            max_attempts=callback_attempts,
            backoff=callback_backoff,
            timeout=callback_timeout,
            workers=callback_workers,
        )
        self._configure_faults(
            recipient_failures, failing_requests, delayed_requests, request_delay
        )
        for number, plan in (delivery_plans or {}).items():
            self.state.set_delivery_plan(plan, number)
        self.voice = VoiceCalls(
            voice_callback_url, number_pattern, currency, callback_timeout
        )
        self._at_api = AtApi(username, api_key, self.state, self.reporter, self.voice)
        self._control = ControlApi(self.state, self.reporter)
        self._stopping = threading.Event()
        self._server: _EmulatorHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._address: tuple[str, int] | None = None

    def _configure_faults(
        self,
        recipient_failures: Mapping[str, str | int] | None,
        failing_requests: int,
        delayed_requests: int,
        request_delay: float,
    ) -> None:
        for number, status in (recipient_failures or {}).items():
            self.state.fail_recipient(number, status)
        if failing_requests:
            self.state.add_http_fault(HttpFault(failing_requests))
        if delayed_requests:
            self.state.add_delay_fault(DelayFault(delayed_requests, request_delay))

    # Lifecycle

    def start(self) -> tuple[str, int]:
        """Bind the server, start serving in the background and return (host, port)."""
        if self._server is not None:
            raise RuntimeError("the emulator is already running")
        if not _is_loopback(self._host):
            logger.warning(
                "Listening on non-loopback host %s: the control API has no "
                "authentication",
                self._host,
            )
        self._stopping.clear()
        server = _EmulatorHTTPServer((self._host, self._port), self)
        host, port = server.server_address[:2]
        self._address = (str(host), int(port))
        self._server = server
        self.reporter.start()
        self.voice.start()
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="at-emulator-http",
            daemon=True,
        )
        self._thread.start()
        logger.info(
            "AT emulator listening on %s (username=%s, callback=%s)",
            self.base_url,
            self._username,
            redact_url(self.reporter.callback_url),
        )
        return self._address

    def stop(self) -> None:
        """Stop serving, close open connections and stop the report workers."""
        server = self._server
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.close_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(5.0)
        self.reporter.stop()
        self.voice.stop()
        self._server = None
        self._thread = None
        logger.info("AT emulator on %s stopped", self.base_url)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def address(self) -> tuple[str, int]:
        if self._address is None:
            raise RuntimeError("the emulator has not been started")
        return self._address

    @property
    def base_url(self) -> str:
        """The URL to use in place of https://api.africastalking.com."""
        host, port = self.address
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{port}"

    @property
    def username(self) -> str:
        return self._username

    # Controls, the same as the /_emulator routes

    @property
    def balance(self) -> Decimal:
        return self.state.balance()

    def set_balance(self, amount: Decimal | str | float) -> None:
        self.state.set_balance(amount)

    def fail_recipient(self, number: str, status: str | int) -> None:
        """Fail every send to `number` with an AT recipient status name or code."""
        self.state.fail_recipient(number, status)

    def clear_recipient_failures(self, number: str | None = None) -> None:
        self.state.clear_recipient_failures(number)

    def fail_next_requests(
        self, count: int, status: int = 500, scope: str = "messaging"
    ) -> None:
        """Fail the next `count` requests in `scope` with HTTP `status`."""
        self.state.add_http_fault(HttpFault(count, status, scope))

    def fail_requests_at_rate(
        self,
        rate: float,
        status: int = 500,
        scope: str = "messaging",
        seed: int | None = None,
    ) -> None:
        """Fail each later request in `scope` with HTTP `status` with probability
        `rate`, from 0 to 1, after the counted faults; rate 0 stops it."""
        self.state.set_http_fault_rate(HttpFaultRate(rate, status, scope), seed)

    def delay_next_requests(
        self, count: int, seconds: float, scope: str = "messaging"
    ) -> None:
        """Hold the next `count` requests in `scope` for `seconds` before responding."""
        self.state.add_delay_fault(DelayFault(count, seconds, scope))

    def set_delivery_plan(self, plan: DeliveryPlan, number: str | None = None) -> None:
        """Set the delivery reports for one number, or the default when None."""
        self.state.set_delivery_plan(plan, number)

    def clear_delivery_plans(self, number: str | None = None) -> None:
        self.state.clear_delivery_plans(number)

    def set_callback_url(self, url: str | None) -> None:
        self.reporter.set_callback_url(url)

    def set_voice_callback_url(self, url: str | None) -> None:
        self.voice.set_callback_url(url)

    def set_call_unanswered(self, number: str, unanswered: bool = True) -> None:
        """Make calls to number go unanswered, or answered again."""
        self.voice.set_unanswered(number, unanswered)

    def reset(self) -> None:
        """Restore the initial balance and clear faults, plans, messages,
        reports and calls."""
        self.state.reset()
        self.reporter.clear_records()
        self.voice.clear_records()

    # Read API

    def messages(self) -> list[dict[str, Any]]:
        """Return every accepted message in the /_emulator/messages JSON form."""
        return self.state.accepted_messages()

    def rejected_messages(self) -> list[dict[str, Any]]:
        return self.state.rejected_messages()

    def receive_counts(self) -> dict[str, int]:
        """Return the number of accepted messages per recipient number."""
        return self.state.receive_counts()

    def reports(self) -> list[dict[str, Any]]:
        """Return every scheduled delivery report with its callback outcome."""
        return self.reporter.records()

    def wait_for_reports(self, timeout: float = 5.0) -> bool:
        """Block until no delivery report is pending. Return False on timeout."""
        return self.reporter.wait_idle(timeout)

    def voice_calls(self) -> list[dict[str, Any]]:
        """Return every placed call with the app's response to its isActive=1
        callback."""
        return self.voice.records()

    def wait_for_voice_calls(self, timeout: float = 5.0) -> bool:
        """Block until every placed call had its callbacks. False on timeout."""
        return self.voice.wait_idle(timeout)

    # Request routing, called from the handler threads

    def dispatch(self, request: ApiRequest) -> Response:
        if request.path == CONTROL_PREFIX or request.path.startswith(
            CONTROL_PREFIX + "/"
        ):
            return self._control.handle(request)

        endpoint = ENDPOINTS.get(request.path)
        if endpoint is not None:
            fault_response = self._apply_faults(endpoint, request)
            if fault_response is not None:
                return fault_response
        return self._at_api.handle(request)

    def _apply_faults(self, endpoint: str, request: ApiRequest) -> Response | None:
        delay = self.state.take_delay(endpoint)
        if delay > 0:
            # The request is still processed after the delay, as a real server may
            # finish a request whose client has already timed out.
            logger.info("Delaying %s %s by %.3f s", request.method, request.path, delay)
            if self._stopping.wait(delay):
                return text_response(503, "The AT emulator is stopping")

        status = self.state.take_http_fault(endpoint)
        if status is None:
            return None
        logger.info(
            "Responding to %s %s with injected HTTP %d",
            request.method,
            request.path,
            status,
        )
        return text_response(status, f"HTTP {status} injected by the AT emulator")


class _EmulatorHTTPServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer that tracks connections so stop() can close them."""

    daemon_threads = True
    request_queue_size = 256

    def __init__(
        self, address: tuple[str, int], emulator: AfricasTalkingEmulator
    ) -> None:
        self.emulator = emulator
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _RequestHandler)

    def track(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.add(connection)

    def untrack(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.discard(connection)

    def close_connections(self) -> None:
        """Shut down kept-alive connections, which would otherwise outlive stop()."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, TimeoutError)):
            logger.debug("Connection from %s ended: %s", client_address, error)
            return
        logger.exception("Unhandled error while serving %s", client_address)


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "retain-at-emulator/0.1"
    # Seconds an idle kept-alive connection stays open.
    timeout = 60
    # A reply goes out as two writes, headers then body. With Nagle's
    # algorithm on, the body waits for the client's delayed ACK of the
    # headers, about 40 ms on Linux, which capped one connection at about
    # 22 requests per second.
    disable_nagle_algorithm = True
    server: _EmulatorHTTPServer

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.untrack(self.connection)

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def _handle(self) -> None:
        body_or_error = self._read_body()
        if isinstance(body_or_error, Response):
            self._write(body_or_error)
            return

        url = urlsplit(self.path)
        request = ApiRequest(
            method=self.command,
            path=url.path,
            query=url.query,
            headers={name.lower(): value for name, value in self.headers.items()},
            body=body_or_error,
        )
        try:
            response = self.server.emulator.dispatch(request)
        except Exception:
            logger.exception("Failed to handle %s %s", self.command, url.path)
            response = text_response(500, "Internal error in the AT emulator")
        self._write(response)

    def _read_body(self) -> bytes | Response:
        """Read the request body, or return the error response for an unreadable one."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            return text_response(
                411, "Chunked bodies are not supported: send Content-Length"
            )
        length_header = self.headers.get("Content-Length", "0")
        try:
            length = int(length_header)
        except ValueError:
            self.close_connection = True
            return text_response(400, f"Invalid Content-Length: {length_header!r}")
        if length < 0:
            self.close_connection = True
            return text_response(400, f"Invalid Content-Length: {length_header!r}")
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            return text_response(
                413,
                f"Request body of {length} bytes exceeds the {MAX_BODY_BYTES}-byte limit",
            )
        return self.rfile.read(length)

    def _write(self, response: Response) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(response.body)

    def log_message(self, format: str, *args: Any) -> None:
        # AT clients send phone numbers in form bodies, not in the request line.
        logger.debug("%s %s", self.address_string(), format % args)

    def log_error(self, format: str, *args: Any) -> None:
        logger.warning("%s %s", self.address_string(), format % args)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
