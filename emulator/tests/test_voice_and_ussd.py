"""Voice calls with their callbacks, and the USSD dialler that plays a customer."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from emulator_helpers import API_KEY, AT_HEADERS, USERNAME
from retain_emulator import AfricasTalkingEmulator, UssdDialer
from retain_emulator.ussd import UssdProtocolError

NUMBER = "+254712345601"
AT_NUMBER = "+254711082000"
SAY = (
    '<?xml version="1.0" encoding="UTF-8"?><Response>'
    '<Say voice="en-US-Standard-C">Hello</Say></Response>'
)

# Returns (status, content type, body) for one posted form.
Respond = Callable[[dict[str, str]], tuple[int, str, str]]


class FormApp:
    """A loopback app that records form POSTs and responds with `respond`."""

    def __init__(self, respond: Respond) -> None:
        self.forms: list[dict[str, str]] = []
        self._respond = respond
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/callback"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        app = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                parsed = parse_qs(body.decode(), keep_blank_values=True)
                form = {name: values[0] for name, values in parsed.items()}
                with app._lock:
                    app.forms.append(form)
                status, content_type, text = app._respond(form)
                data = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        return Handler


@pytest.fixture
def voice_app() -> Iterator[FormApp]:
    app = FormApp(lambda form: (200, "application/xml", SAY))
    app.start()
    yield app
    app.stop()


@pytest.fixture
def calling_emulator(voice_app: FormApp) -> Iterator[AfricasTalkingEmulator]:
    with AfricasTalkingEmulator(
        USERNAME, API_KEY, voice_callback_url=voice_app.url
    ) as emulator:
        yield emulator


def place_call(
    emulator: AfricasTalkingEmulator, headers: dict[str, str] | None = None, **form: str
) -> httpx.Response:
    fields = {"username": USERNAME, "from": AT_NUMBER, "to": NUMBER, **form}
    with httpx.Client(base_url=emulator.base_url, timeout=5) as client:
        return client.post(
            "/call", data=fields, headers=AT_HEADERS if headers is None else headers
        )


def test_call_is_queued_with_session_id(
    calling_emulator: AfricasTalkingEmulator,
) -> None:
    response = place_call(calling_emulator)

    assert response.status_code == 200
    [entry] = response.json()["entries"]
    assert entry["phoneNumber"] == NUMBER
    assert entry["status"] == "Queued"
    assert entry["sessionId"].startswith("ATVId_")
    assert response.json()["errorMessage"] == "None"


def test_call_posts_active_then_final_callback(
    calling_emulator: AfricasTalkingEmulator, voice_app: FormApp
) -> None:
    [entry] = place_call(calling_emulator).json()["entries"]

    assert calling_emulator.wait_for_voice_calls(5)
    active, final = voice_app.forms
    assert active["isActive"] == "1"
    assert active["sessionId"] == entry["sessionId"]
    assert active["callerNumber"] == NUMBER
    assert active["destinationNumber"] == AT_NUMBER
    assert active["direction"] == "Outbound"
    assert final["isActive"] == "0"
    assert final["sessionId"] == entry["sessionId"]
    assert int(final["durationInSeconds"]) > 0
    assert final["currencyCode"] == "KES"


def test_unanswered_call_posts_only_final_callback(
    calling_emulator: AfricasTalkingEmulator, voice_app: FormApp
) -> None:
    calling_emulator.set_call_unanswered(NUMBER)

    [entry] = place_call(calling_emulator).json()["entries"]

    assert calling_emulator.wait_for_voice_calls(5)
    [final] = voice_app.forms
    assert final["isActive"] == "0"
    assert final["sessionId"] == entry["sessionId"]
    assert final["durationInSeconds"] == "0"
    assert final["amount"] == "0"
    assert final["hangupCause"] == "NO_ANSWER"
    [call] = calling_emulator.voice_calls()
    assert call["outcome"] == "unanswered"


def test_calls_to_several_numbers_share_one_request(
    calling_emulator: AfricasTalkingEmulator,
) -> None:
    second = "+254712345602"

    response = place_call(calling_emulator, to=f"{NUMBER},{second}")

    entries = response.json()["entries"]
    assert [e["phoneNumber"] for e in entries] == [NUMBER, second]
    assert {e["status"] for e in entries} == {"Queued"}
    assert calling_emulator.wait_for_voice_calls(5)
    assert len(calling_emulator.voice_calls()) == 2


def test_call_records_xml_response(calling_emulator: AfricasTalkingEmulator) -> None:
    place_call(calling_emulator)

    assert calling_emulator.wait_for_voice_calls(5)
    [call] = calling_emulator.voice_calls()
    assert call["outcome"] == "answered"
    assert call["response"] == SAY
    assert call["responseContentType"].startswith("application/xml")
    assert call["phoneNumber"] == NUMBER


def test_call_to_invalid_number_is_not_placed(
    calling_emulator: AfricasTalkingEmulator, voice_app: FormApp
) -> None:
    response = place_call(calling_emulator, to="+1555")

    [entry] = response.json()["entries"]
    assert entry["status"] == "InvalidPhoneNumber"
    assert entry["sessionId"] == ""
    assert calling_emulator.wait_for_voice_calls(5)
    assert calling_emulator.voice_calls() == []
    assert voice_app.forms == []


def test_call_without_api_key_is_unauthorised(
    calling_emulator: AfricasTalkingEmulator,
) -> None:
    response = place_call(calling_emulator, headers={"Accept": "application/json"})

    assert response.status_code == 401
    assert calling_emulator.voice_calls() == []


def test_call_without_from_is_rejected(
    calling_emulator: AfricasTalkingEmulator,
) -> None:
    response = place_call(calling_emulator, **{"from": ""})

    assert response.status_code == 400
    assert "from" in response.text


def test_call_without_callback_url_posts_nothing(voice_app: FormApp) -> None:
    with AfricasTalkingEmulator(USERNAME, API_KEY) as emulator:
        place_call(emulator)

        assert emulator.wait_for_voice_calls(5)
        [call] = emulator.voice_calls()
    assert call["outcome"] == "no_callback"
    assert voice_app.forms == []


def test_voice_fault_leaves_sms_alone(
    calling_emulator: AfricasTalkingEmulator,
) -> None:
    calling_emulator.fail_next_requests(1, 503, scope="voice")

    faulted = place_call(calling_emulator)
    placed = place_call(calling_emulator)

    assert faulted.status_code == 503
    assert placed.status_code == 200


def survey(form: dict[str, str]) -> tuple[int, str, str]:
    """Ask for 1 or 2, then a confirmation, then end; re-ask on other input."""
    text = form["text"]
    inputs = text.split("*") if text else []
    if not inputs:
        return 200, "text/plain", "CON Pick 1 or 2"
    if inputs[-1] not in ("1", "2"):
        return 200, "text/plain", "CON Invalid. Pick 1 or 2"
    if len(inputs) == 1:
        return 200, "text/plain", "CON Sure? 1 yes 2 no"
    return 200, "text/plain", "END Done"


@pytest.fixture
def ussd_app() -> Iterator[FormApp]:
    app = FormApp(survey)
    app.start()
    yield app
    app.stop()


def test_dialler_plays_session_to_end(ussd_app: FormApp) -> None:
    with UssdDialer(ussd_app.url, NUMBER, session_id="ATUid_1") as dialler:
        replies = dialler.play(["1", "2", "1"])

    assert replies == ["CON Pick 1 or 2", "CON Sure? 1 yes 2 no", "END Done"]
    assert [form["text"] for form in ussd_app.forms] == ["", "1", "1*2"]
    first = ussd_app.forms[0]
    assert first["sessionId"] == "ATUid_1"
    assert first["phoneNumber"] == NUMBER
    assert first["serviceCode"] == "*384*1234#"
    assert first["networkCode"] == "63902"


def test_dialler_keeps_invalid_inputs_in_text(ussd_app: FormApp) -> None:
    with UssdDialer(ussd_app.url, NUMBER) as dialler:
        dialler.dial()
        invalid = dialler.send("7")
        dialler.send("2")

    assert invalid == "CON Invalid. Pick 1 or 2"
    assert [form["text"] for form in ussd_app.forms] == ["", "7", "7*2"]


def test_dialler_repeat_posts_same_text(ussd_app: FormApp) -> None:
    with UssdDialer(ussd_app.url, NUMBER) as dialler:
        dialler.dial()
        sent = dialler.send("1")
        repeated = dialler.repeat()

    assert repeated == sent
    assert [form["text"] for form in ussd_app.forms] == ["", "1", "1"]


def test_dialler_refuses_input_after_end(ussd_app: FormApp) -> None:
    with UssdDialer(ussd_app.url, NUMBER) as dialler:
        dialler.play(["1", "1"])

        assert dialler.ended
        with pytest.raises(RuntimeError):
            dialler.send("1")


def test_dialler_rejects_reply_without_prefix() -> None:
    app = FormApp(lambda form: (200, "text/plain", "Welcome"))
    app.start()
    try:
        with UssdDialer(app.url, NUMBER) as dialler, pytest.raises(UssdProtocolError):
            dialler.dial()
    finally:
        app.stop()


def test_dialler_raises_on_http_error() -> None:
    app = FormApp(lambda form: (403, "text/plain", ""))
    app.start()
    try:
        with (
            UssdDialer(app.url, NUMBER) as dialler,
            pytest.raises(httpx.HTTPStatusError) as caught,
        ):
            dialler.dial()
    finally:
        app.stop()

    assert caught.value.response.status_code == 403
