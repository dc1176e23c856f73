"""A loopback stand-in for Groq's OpenAI-compatible chat completions API.

`GroqStandIn` serves POST /openai/v1/chat/completions and GET /openai/v1/models
with Groq's JSON shapes, checks the `Authorization: Bearer` key and records every
authenticated request so that tests can read the prompts. Tests script each
model: decommissioned, not found, rate limited with `retry-after`, rejected as too
large, delayed past the client's timeout, or replying with given content. A model
without a script replies with a valid `{"text": ...}` JSON message built from the
request, reading the fields language_name, brand_name, allowed_offer and
opt_out_hint of a JSON user message when they are present.
"""

from __future__ import annotations

import json
import logging
import secrets
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

from retain_emulator.http_types import ApiRequest, Response, json_response

logger = logging.getLogger(__name__)

CHAT_COMPLETIONS_PATH = "/openai/v1/chat/completions"
MODELS_PATH = "/openai/v1/models"
# A script for ANY_MODEL applies to a request whose model has no script of its own.
ANY_MODEL = "*"
MAX_BODY_BYTES = 1024 * 1024

Responder = Callable[[str, dict[str, Any]], Response]


@dataclass(frozen=True)
class RecordedRequest:
    """One authenticated chat completions request as the stand-in received it."""

    model: str
    messages: list[dict[str, Any]]
    body: dict[str, Any]

    def prompt_text(self) -> str:
        """Return the content of every message, one per line."""
        return "\n".join(str(message.get("content", "")) for message in self.messages)


@dataclass
class _Script:
    """A behaviour for the next `remaining` requests, or every request when None."""

    remaining: int | None
    respond: Responder | None = None
    delay_seconds: float = 0.0


def error_response(
    status: int,
    message: str,
    code: str | None,
    error_type: str = "invalid_request_error",
    headers: dict[str, str] | None = None,
) -> Response:
    """Return an error in Groq's shape: {"error": {"message", "type", "code"}}."""
    body = {"error": {"message": message, "type": error_type, "code": code}}
    response = json_response(status, body)
    return Response(status, response.body, response.content_type, headers or {})


class GroqStandIn:
    """A loopback server that speaks Groq's chat completions API for tests.

    Point the `groq` SDK at `base_url` with the same API key. `models`, when
    given, lists the model ids that exist, and any other id gets a 404
    `model_not_found`. None accepts every id.
    """

    def __init__(
        self,
        api_key: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        models: Iterable[str] | None = None,
    ) -> None:
        if not api_key:
            raise ValueError("api_key must not be empty")
        self._api_key = api_key
        self._host = host
        self._port = port
        self._models = None if models is None else set(models)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._decommissioned: set[str] = set()
        self._forgotten: set[str] = set()
        self._scripts: dict[str, list[_Script]] = {}
        self._delays: dict[str, list[_Script]] = {}
        self._requests: list[RecordedRequest] = []
        self._server: _StandInHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # Lifecycle

    def start(self) -> tuple[str, int]:
        """Bind the server, start serving in the background and return (host, port)."""
        if self._server is not None:
            raise RuntimeError("the Groq stand-in is already running")
        self._stopping.clear()
        self._server = _StandInHTTPServer((self._host, self._port), self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="groq-stand-in-http",
            daemon=True,
        )
        self._thread.start()
        logger.info("Groq stand-in listening on %s", self.base_url)
        return self.address

    def stop(self) -> None:
        """Stop serving. Requests held by a delay end with HTTP 503."""
        server = self._server
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(5.0)
        self._server = None
        self._thread = None
        logger.info("Groq stand-in stopped")

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
        if self._server is None:
            raise RuntimeError("the Groq stand-in has not been started")
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def base_url(self) -> str:
        """The URL to use in place of https://api.groq.com."""
        host, port = self.address
        return f"http://{host}:{port}"

    # Scripting

    def decommission(self, model: str) -> None:
        """Respond to every request for `model` with 400 `model_decommissioned`."""
        with self._lock:
            self._decommissioned.add(model)

    def forget_model(self, model: str) -> None:
        """Respond to every request for `model` with 404 `model_not_found`."""
        with self._lock:
            self._forgotten.add(model)

    def rate_limit(self, model: str, times: int = 1, retry_after: float = 1.0) -> None:
        """Respond to the next `times` requests with 429 and `retry-after`."""
        self._add_script(model, _Script(times, _rate_limited(retry_after)))

    def reject_as_too_large(self, model: str, times: int | None = None) -> None:
        """Respond with 413, as Groq does for a request above the token limit."""
        self._add_script(model, _Script(times, _too_large))

    def fail(
        self,
        model: str,
        status: int,
        code: str,
        message: str = "injected by the Groq stand-in",
        times: int = 1,
    ) -> None:
        """Respond to the next `times` requests with an error of `status`, `code`."""

        def respond(_model: str, _body: dict[str, Any]) -> Response:
            return error_response(status, message, code)

        self._add_script(model, _Script(times, respond))

    def reply_with_content(
        self, model: str, content: str, times: int | None = None
    ) -> None:
        """Reply with `content` as the message content, whatever it holds."""

        def respond(model_id: str, body: dict[str, Any]) -> Response:
            return _completion(model_id, body, content)

        self._add_script(model, _Script(times, respond))

    def reply_with_text(self, model: str, text: str, times: int | None = None) -> None:
        """Reply with the JSON content {"text": text}."""
        self.reply_with_content(model, json.dumps({"text": text}), times)

    def delay(self, model: str, seconds: float, times: int = 1) -> None:
        """Hold the next `times` requests for `seconds` before responding."""
        with self._lock:
            self._delays.setdefault(model, []).append(_Script(times, None, seconds))

    def reset(self) -> None:
        """Clear every script and recorded request."""
        with self._lock:
            self._decommissioned.clear()
            self._forgotten.clear()
            self._scripts.clear()
            self._delays.clear()
            self._requests.clear()

    def _add_script(self, model: str, script: _Script) -> None:
        with self._lock:
            self._scripts.setdefault(model, []).append(script)

    # Read API

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def requests_for(self, model: str) -> list[RecordedRequest]:
        return [request for request in self.requests if request.model == model]

    # Request handling, called from the handler threads

    def dispatch(self, request: ApiRequest) -> Response:
        if request.path not in (CHAT_COMPLETIONS_PATH, MODELS_PATH):
            message = f"Unknown request URL: {request.method} {request.path}"
            return error_response(404, message, "unknown_url")
        if request.header("authorization") != f"Bearer {self._api_key}":
            return error_response(401, "Invalid API Key", "invalid_api_key")
        if request.path == MODELS_PATH:
            return self._list_models()
        if request.method != "POST":
            return error_response(405, "Use POST for chat completions", "bad_method")

        body = _parse_body(request)
        if isinstance(body, Response):
            return body
        model = body["model"]
        with self._lock:
            self._requests.append(RecordedRequest(model, body["messages"], body))
            delay = _take(self._delays, model)
        if delay is not None and self._stopping.wait(delay.delay_seconds):
            return error_response(503, "The Groq stand-in is stopping", "unavailable")
        return self._respond(model, body)

    def _respond(self, model: str, body: dict[str, Any]) -> Response:
        with self._lock:
            decommissioned = model in self._decommissioned
            missing = model in self._forgotten or (
                self._models is not None and model not in self._models
            )
            script = _take(self._scripts, model)
        if decommissioned:
            message = (
                f"The model `{model}` has been decommissioned and is no longer "
                "supported. Please refer to https://console.groq.com/docs/"
                "deprecations for a recommendation on which model to use instead."
            )
            return error_response(400, message, "model_decommissioned")
        if missing:
            message = (
                f"The model `{model}` does not exist or you do not have access to it."
            )
            return error_response(404, message, "model_not_found")
        if script is not None and script.respond is not None:
            return script.respond(model, body)
        return _completion(model, body, default_content(body["messages"]))

    def _list_models(self) -> Response:
        with self._lock:
            ids = sorted(self._models) if self._models is not None else []
        data = [
            {"id": model, "object": "model", "created": 0, "owned_by": "stand-in"}
            for model in ids
        ]
        return json_response(200, {"object": "list", "data": data})


def _take(scripts: dict[str, list[_Script]], model: str) -> _Script | None:
    """Return the current script for `model` or ANY_MODEL and use up one turn."""
    for key in (model, ANY_MODEL):
        queue = scripts.get(key)
        if not queue:
            continue
        script = queue[0]
        if script.remaining is not None:
            script.remaining -= 1
            if script.remaining <= 0:
                queue.pop(0)
        return script
    return None


def _parse_body(request: ApiRequest) -> dict[str, Any] | Response:
    """Return the JSON body, or a 400 error when it lacks a model or messages."""
    try:
        body = request.json_body()
    except (ValueError, UnicodeDecodeError):
        return error_response(400, "The request body is not valid JSON", "invalid_json")
    if not isinstance(body, dict) or not isinstance(body.get("model"), str):
        return error_response(400, "property 'model' is missing", None)
    if not isinstance(body.get("messages"), list):
        return error_response(400, "property 'messages' is missing", None)
    return body


def _rate_limited(retry_after: float) -> Responder:
    def respond(model: str, _body: dict[str, Any]) -> Response:
        message = (
            f"Rate limit reached for model `{model}` in organization `org_stand_in` "
            "service tier `on_demand` on requests per minute (RPM): Limit 30, "
            f"Used 30, Requested 1. Please try again in {retry_after:g}s."
        )
        headers = {"retry-after": f"{retry_after:g}"}
        return error_response(429, message, "rate_limit_exceeded", "requests", headers)

    return respond


def _too_large(model: str, _body: dict[str, Any]) -> Response:
    message = (
        f"Request too large for model `{model}` in organization `org_stand_in` "
        "service tier `on_demand` on tokens per minute (TPM): Limit 6000, "
        "Requested 7000, please reduce your message size and try again."
    )
    return error_response(413, message, "rate_limit_exceeded", "tokens")


def _completion(model: str, body: dict[str, Any], content: str) -> Response:
    """Return a chat.completion object whose one choice has `content`."""
    prompt_tokens = sum(
        len(str(message.get("content", ""))) // 4 for message in body["messages"]
    )
    completion_tokens = len(content) // 4
    payload = {
        "id": f"chatcmpl-{secrets.token_hex(12)}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
        "system_fingerprint": "fp_stand_in",
        "x_groq": {"id": f"req_{secrets.token_hex(12)}"},
    }
    return json_response(200, payload)


def default_content(messages: list[dict[str, Any]]) -> str:
    """Return a valid `{"text": ...}` reply built from the last user message."""
    user_contents = [m.get("content") for m in messages if m.get("role") == "user"]
    try:
        data = json.loads(user_contents[-1]) if user_contents else {}
    except (TypeError, ValueError):
        data = {}
    if not isinstance(data, dict):
        data = {}
    brand = str(data.get("brand_name", "")).strip()
    offer = str(data.get("allowed_offer", "")).strip()
    opt_out = str(data.get("opt_out_hint", "")).strip()
    if data.get("language_name") == "Swahili":
        parts = ["Habari {first_name}, tumekukumbuka."]
        parts.append(f"Ofa: {offer}." if offer else "")
        parts.append(f"Karibu tena {brand}." if brand else "Karibu tena.")
    else:
        parts = ["Hi {first_name}, we miss you."]
        parts.append(f"Enjoy {offer}." if offer else "")
        parts.append(f"See you soon at {brand}." if brand else "See you soon.")
    parts.append(opt_out)
    return json.dumps({"text": " ".join(part for part in parts if part)})


class _StandInHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], stand_in: GroqStandIn) -> None:
        self.stand_in = stand_in
        super().__init__(address, _RequestHandler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, TimeoutError)):
            # A client that timed out has closed the connection of a delayed request.
            logger.debug("Connection from %s ended: %s", client_address, error)
            return
        logger.exception("Unhandled error while serving %s", client_address)


class _RequestHandler(BaseHTTPRequestHandler):
    """A handler that closes each connection after one response.

    Without kept-alive connections, stop() never waits on an idle client.
    """

    protocol_version = "HTTP/1.1"
    server_version = "retain-groq-stand-in/0.1"
    timeout = 30
    server: _StandInHTTPServer

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def _handle(self) -> None:
        self.close_connection = True
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            message = "Content-Length must be a whole number of 0 or more"
            self._write(error_response(400, message, None))
            return
        if length > MAX_BODY_BYTES:
            message = f"Request body of {length} bytes exceeds {MAX_BODY_BYTES} bytes"
            self._write(error_response(413, message, "request_too_large"))
            return
        url = urlsplit(self.path)
        request = ApiRequest(
            method=self.command,
            path=url.path,
            query=url.query,
            headers={name.lower(): value for name, value in self.headers.items()},
            body=self.rfile.read(length),
        )
        try:
            response = self.server.stand_in.dispatch(request)
        except Exception:
            logger.exception("Failed to handle %s %s", self.command, url.path)
            response = error_response(500, "Internal error", "internal_server_error")
        self._write(response)

    def _write(self, response: Response) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        self.send_header("Connection", "close")
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(response.body)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s %s", self.address_string(), format % args)
