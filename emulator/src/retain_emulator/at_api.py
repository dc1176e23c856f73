"""The emulated AT endpoints: POST /version1/messaging, GET /version1/user and
the voice API's POST /call.

The real voice API has its own host, so a client uses the emulator's base URL
for both AT_BASE_URL and AT_VOICE_BASE_URL.

Checks run in this order: apiKey header, Accept header, form fields, username.
A missing or wrong apiKey and a wrong username get 401 with AT's plain-text body
"The supplied authentication is invalid".

AT replies in XML unless the request has "Accept: application/json". The emulator
speaks only JSON, so it rejects such requests with 406 Not Acceptable instead of
replying in XML. A client that works against the emulator therefore always sends
the Accept header that the real service needs for JSON.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable

from retain_emulator.delivery import DeliveryReporter
from retain_emulator.http_types import (
    ApiRequest,
    Response,
    json_response,
    text_response,
)
from retain_emulator.state import EmulatorState, SendRequest
from retain_emulator.voice import VoiceCalls
from retain_emulator.wire import split_recipients

logger = logging.getLogger(__name__)

MESSAGING_PATH = "/version1/messaging"
USER_PATH = "/version1/user"
CALL_PATH = "/call"

# Endpoint names that faults are scoped by, keyed by request path.
ENDPOINTS = {MESSAGING_PATH: "messaging", USER_PATH: "user", CALL_PATH: "voice"}

INVALID_AUTHENTICATION = "The supplied authentication is invalid"
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"


def accepts_json(accept_header: str | None) -> bool:
    """Return whether the Accept header lists application/json explicitly.

    A wildcard such as */* does not count, because AT replies to it in XML.
    """
    if not accept_header:
        return False
    media_types = (
        part.split(";")[0].strip().lower() for part in accept_header.split(",")
    )
    return "application/json" in media_types


class AtApi:
    """Authenticate AT API requests and route them to the account state."""

    def __init__(
        self,
        username: str,
        api_key: str,
        state: EmulatorState,
        reporter: DeliveryReporter,
        voice: VoiceCalls,
    ) -> None:
        self._username = username
        self._api_key = api_key
        self._state = state
        self._reporter = reporter
        self._voice = voice

    def handle(self, request: ApiRequest) -> Response:
        if request.path == MESSAGING_PATH:
            if request.method != "POST":
                return _method_not_allowed(request, "POST")
            return self._checked(request, self._send)
        if request.path == USER_PATH:
            if request.method != "GET":
                return _method_not_allowed(request, "GET")
            return self._checked(request, self._user_data)
        if request.path == CALL_PATH:
            if request.method != "POST":
                return _method_not_allowed(request, "POST")
            return self._checked(request, self._call)
        return text_response(404, f"Not found: {request.path}")

    def _checked(
        self, request: ApiRequest, route: Callable[[ApiRequest], Response]
    ) -> Response:
        if not self._api_key_matches(request.header("apiKey")):
            return text_response(401, INVALID_AUTHENTICATION)
        if not accepts_json(request.header("Accept")):
            return text_response(
                406,
                "This emulator answers only in JSON: send the header "
                "'Accept: application/json'",
            )
        return route(request)

    def _api_key_matches(self, supplied: str | None) -> bool:
        if supplied is None:
            return False
        return hmac.compare_digest(supplied.encode(), self._api_key.encode())

    def _form(
        self, request: ApiRequest, required: tuple[str, ...]
    ) -> dict[str, str] | Response:
        """Return the form fields, or the error response for an unusable form."""
        content_type = (request.header("Content-Type") or FORM_CONTENT_TYPE).lower()
        if not content_type.startswith(FORM_CONTENT_TYPE):
            return text_response(
                415,
                f"Unsupported Content-Type {content_type!r}: send the fields "
                f"form-encoded as {FORM_CONTENT_TYPE}",
            )
        try:
            form = request.form()
        except UnicodeDecodeError:
            return text_response(400, "Invalid request body: the form is not UTF-8")
        missing = _first_missing(form, required)
        if missing is not None:
            return text_response(400, f"Missing required field: {missing}")
        if form["username"] != self._username:
            return text_response(401, INVALID_AUTHENTICATION)
        return form

    def _send(self, request: ApiRequest) -> Response:
        form = self._form(request, ("username", "to", "message"))
        if isinstance(form, Response):
            return form

        recipients = split_recipients(form["to"])
        if not recipients:
            return text_response(400, "Missing required field: to")
        for flag in ("bulkSMSMode", "enqueue"):
            if flag in form and form[flag] not in ("0", "1"):
                return text_response(
                    400, f"Invalid {flag} {form[flag]!r}: expected 0 or 1"
                )

        send_request = SendRequest(
            recipients=recipients,
            message=form["message"],
            sender=form.get("from") or None,
            bulk_sms_mode=form.get("bulkSMSMode"),
            enqueue=form.get("enqueue"),
        )
        outcome = self._state.send(send_request)
        for message, plan in outcome.accepted:
            self._reporter.schedule(message.message_id, message.number, plan)
        logger.debug(
            "Send to %d recipients accepted %d",
            len(recipients),
            len(outcome.accepted),
        )
        return json_response(201, outcome.reply)

    def _call(self, request: ApiRequest) -> Response:
        form = self._form(request, ("username", "from", "to"))
        if isinstance(form, Response):
            return form
        numbers = split_recipients(form["to"])
        if not numbers:
            return text_response(400, "Missing required field: to")
        entries = self._voice.place(form["from"], numbers)
        logger.debug("Queued calls for a request to %d numbers", len(numbers))
        return json_response(200, {"entries": entries, "errorMessage": "None"})

    def _user_data(self, request: ApiRequest) -> Response:
        username = request.query_params().get("username")
        if not username:
            return text_response(400, "Missing required field: username")
        if username != self._username:
            return text_response(401, INVALID_AUTHENTICATION)
        return json_response(
            200, {"UserData": {"balance": self._state.formatted_balance()}}
        )


def _first_missing(form: dict[str, str], names: tuple[str, ...]) -> str | None:
    for name in names:
        if not form.get(name):
            return name
    return None


def _method_not_allowed(request: ApiRequest, allowed: str) -> Response:
    return text_response(
        405,
        f"Method {request.method} is not allowed on {request.path}; use {allowed}",
        headers={"Allow": allowed},
    )
