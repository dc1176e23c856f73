"""Voice calls: POST /call and the voice callbacks that follow it.

AT's voice API, on its own host (voice.africastalking.com), takes the form
fields username, from (the account's AT number) and to (numbers separated by
commas). It replies {"entries": [{"phoneNumber", "status", "sessionId"}],
"errorMessage": "None"}, where status is "Queued" for a call it will place.

AT then POSTs the voice callback URL of the from number when the call
connects (isActive=1) and once more when it ends (isActive=0, with
durationInSeconds, currencyCode and amount). Both carry sessionId, direction
("Outbound" here), callerNumber (the phone user's number) and
destinationNumber (the AT number). The app responds to the first one with
AT's XML. The emulator posts both from a background thread and records the XML, so
tests can read the text a call would have read out.

A number set with set_unanswered() does not pick up: its call gets only the
final callback, with durationInSeconds 0, amount 0 and hangupCause NO_ANSWER.
"""

from __future__ import annotations

import logging
import queue
import re
import threading
import uuid
from dataclasses import dataclass
from typing import Any

import httpx

from retain_emulator.delivery import redact_url, utc_timestamp, validate_callback_url
from retain_emulator.wire import is_valid_number, mask_number

logger = logging.getLogger(__name__)

QUEUED = "Queued"
INVALID_NUMBER = "InvalidPhoneNumber"
# Seconds every emulated call lasts, and its price per call in the account
# currency; AT bills per started minute, so one minute's price.
CALL_DURATION_SECONDS = 12
CALL_PRICE = "3.0000"
NO_ANSWER = "NO_ANSWER"


def new_session_id() -> str:
    return f"ATVId_{uuid.uuid4().hex}"


@dataclass
class CallRecord:
    """One placed call and how its callbacks went."""

    session_id: str
    phone_number: str
    from_number: str
    # outcome is "pending", "answered", "unanswered", "failed", "no_callback"
    # or "dropped"; "answered" means the app responded with HTTP 2xx.
    outcome: str = "pending"
    last_http_status: int | None = None
    last_error: str = ""
    # response is the body the app returned to the isActive=1 callback.
    response: str = ""
    response_content_type: str = ""
    ended_at: str | None = None
    answered: bool = True

    def to_json(self) -> dict[str, Any]:
        return {
            "sessionId": self.session_id,
            "phoneNumber": self.phone_number,
            "from": self.from_number,
            "outcome": self.outcome,
            "lastHttpStatus": self.last_http_status,
            "lastError": self.last_error,
            "response": self.response,
            "responseContentType": self.response_content_type,
            "endedAt": self.ended_at,
        }

    def callback_fields(self, active: bool, currency: str) -> dict[str, str]:
        fields = {
            "isActive": "1" if active else "0",
            "sessionId": self.session_id,
            "direction": "Outbound",
            "callerNumber": self.phone_number,
            "destinationNumber": self.from_number,
        }
        if not active and self.answered:
            fields.update(
                durationInSeconds=str(CALL_DURATION_SECONDS),
                currencyCode=currency,
                amount=CALL_PRICE,
                callSessionState="Completed",
                hangupCause="NORMAL_CLEARING",
            )
        elif not active:
            fields.update(
                durationInSeconds="0",
                currencyCode=currency,
                amount="0",
                callSessionState="Completed",
                hangupCause=NO_ANSWER,
            )
        return fields


class VoiceCalls:
    """Accept calls and POST their callbacks from one background thread."""

    def __init__(
        self,
        callback_url: str | None,
        number_pattern: str,
        currency: str = "KES",
        timeout: float = 2.0,
    ) -> None:
        validate_callback_url(callback_url)
        self._callback_url = callback_url
        self._pattern = re.compile(number_pattern)
        self._currency = currency
        self._timeout = timeout
        self._lock = threading.Condition()
        self._records: list[CallRecord] = []
        self._unanswered: set[str] = set()
        self._pending = 0
        self._queue: queue.Queue[CallRecord | None] = queue.Queue()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def callback_url(self) -> str | None:
        with self._lock:
            return self._callback_url

    def set_callback_url(self, url: str | None) -> None:
        validate_callback_url(url)
        with self._lock:
            self._callback_url = url

    def set_unanswered(self, number: str, unanswered: bool = True) -> None:
        """Make calls to number go unanswered from now on, or answered again."""
        with self._lock:
            if unanswered:
                self._unanswered.add(number)
            else:
                self._unanswered.discard(number)

    def start(self) -> None:
        self._stopping.clear()
        self._thread = threading.Thread(
            target=self._run, name="at-emulator-voice", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the callback thread; calls still queued are dropped."""
        if self._thread is None:
            return
        self._stopping.set()
        self._queue.put(None)
        self._thread.join(timeout)
        self._thread = None

    def place(self, from_number: str, numbers: list[str]) -> list[dict[str, str]]:
        """Queue a call to each valid number and return the reply's entries."""
        entries = []
        for number in numbers:
            if not is_valid_number(number, self._pattern):
                entries.append(
                    {"phoneNumber": number, "status": INVALID_NUMBER, "sessionId": ""}
                )
                continue
            record = CallRecord(new_session_id(), number, from_number)
            with self._lock:
                record.answered = number not in self._unanswered
                self._records.append(record)
                self._pending += 1
            self._queue.put(record)
            entries.append(
                {
                    "phoneNumber": number,
                    "status": QUEUED,
                    "sessionId": record.session_id,
                }
            )
        return entries

    def records(self) -> list[dict[str, Any]]:
        with self._lock:
            return [record.to_json() for record in self._records]

    def clear_records(self) -> None:
        with self._lock:
            self._records.clear()
            self._unanswered.clear()

    def wait_idle(self, timeout: float) -> bool:
        """Block until every queued call has had its callbacks. False on timeout."""
        with self._lock:
            return self._lock.wait_for(lambda: self._pending == 0, timeout)

    def _run(self) -> None:
        with httpx.Client(timeout=self._timeout) as client:
            while True:
                record = self._queue.get()
                if record is None:
                    return
                try:
                    if self._stopping.is_set():
                        self._finish(record, "dropped", None, "the emulator stopped")
                    else:
                        self._call(client, record)
                finally:
                    with self._lock:
                        self._pending -= 1
                        self._lock.notify_all()

    def _call(self, client: httpx.Client, record: CallRecord) -> None:
        """POST the isActive=1 callback, keep the response, then POST the end."""
        url = self.callback_url
        if url is None:
            self._finish(record, "no_callback", None, "")
            return
        if not record.answered:
            self._post_unanswered(client, url, record)
            return
        try:
            response = client.post(
                url, data=record.callback_fields(True, self._currency)
            )
            if response.is_success:
                with self._lock:
                    record.response = response.text
                    record.response_content_type = response.headers.get(
                        "content-type", ""
                    )
            client.post(url, data=record.callback_fields(False, self._currency))
        except httpx.HTTPError as error:
            logger.warning(
                "Voice callback of call %s to %s failed: %s",
                record.session_id,
                mask_number(record.phone_number),
                type(error).__name__,
            )
            self._finish(record, "failed", None, f"{type(error).__name__}: {error}")
            return
        outcome = "answered" if response.is_success else "failed"
        error_text = "" if response.is_success else f"HTTP {response.status_code}"
        self._finish(record, outcome, response.status_code, error_text)
        logger.debug(
            "Call %s posted to %s: %s", record.session_id, redact_url(url), outcome
        )

    def _post_unanswered(
        self, client: httpx.Client, url: str, record: CallRecord
    ) -> None:
        """POST only the final callback of a call that was not answered."""
        try:
            response = client.post(
                url, data=record.callback_fields(False, self._currency)
            )
        except httpx.HTTPError as error:
            self._finish(record, "failed", None, f"{type(error).__name__}: {error}")
            return
        self._finish(record, "unanswered", response.status_code, "")

    def _finish(
        self, record: CallRecord, outcome: str, status: int | None, error: str
    ) -> None:
        with self._lock:
            record.outcome = outcome
            record.last_http_status = status
            record.last_error = error
            record.ended_at = utc_timestamp()
