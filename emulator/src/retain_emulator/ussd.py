"""A USSD dialler for tests: it plays a customer who dials a code and replies.

Africa's Talking POSTs each step of a USSD session to the app's callback URL as
a form with sessionId, serviceCode, phoneNumber, networkCode and text. The text
joins every input of the session so far with "*" and is empty on the first
step. The app replies text/plain starting with "CON " to ask for another input
or "END " to close the session.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from types import TracebackType
from typing import Self

import httpx

from retain_emulator.delivery import SAFARICOM_NETWORK_CODE, validate_callback_url

DEFAULT_SERVICE_CODE = "*384*1234#"


class UssdProtocolError(Exception):
    """Raised when the app's reply starts with neither "CON " nor "END "."""


class UssdDialer:
    """One USSD session of one phone number against an app's callback URL.

    Call dial() first, then send() for each input; repeat() posts the last
    step again, as AT does when the app's reply was lost. replies lists every
    reply received, in order.
    """

    def __init__(
        self,
        callback_url: str,
        phone_number: str,
        *,
        service_code: str = DEFAULT_SERVICE_CODE,
        network_code: str = SAFARICOM_NETWORK_CODE,
        session_id: str | None = None,
        timeout: float = 5.0,
    ) -> None:
        validate_callback_url(callback_url)
        self.callback_url = callback_url
        self.phone_number = phone_number
        self.service_code = service_code
        self.network_code = network_code
        self.session_id = session_id or f"ATUid_{uuid.uuid4().hex}"
        self.inputs: list[str] = []
        self.replies: list[str] = []
        self._client = httpx.Client(timeout=timeout)

    @property
    def ended(self) -> bool:
        """Whether the app closed the session with an "END " reply."""
        return bool(self.replies) and self.replies[-1].startswith("END ")

    def dial(self) -> str:
        """Start the session, as the customer dialling the code, and return the
        first reply."""
        if self.replies:
            raise RuntimeError("the session was dialled already; use send()")
        return self._post()

    def send(self, value: str) -> str:
        """Send one input in reply to the last screen and return the next reply."""
        if not self.replies:
            raise RuntimeError("dial() before sending an input")
        if self.ended:
            raise RuntimeError("the app ended the session; dial a new one")
        self.inputs.append(value)
        return self._post()

    def repeat(self) -> str:
        """Post the last step again with the same text and return the reply."""
        if not self.replies:
            raise RuntimeError("dial() before repeating a step")
        return self._post()

    def play(self, values: Iterable[str]) -> list[str]:
        """Dial, send each value until the app ends the session, and return
        every reply."""
        self.dial()
        for value in values:
            if self.ended:
                break
            self.send(value)
        return list(self.replies)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _post(self) -> str:
        """POST the current step; raise httpx.HTTPStatusError on a non-2xx reply."""
        form = {
            "sessionId": self.session_id,
            "serviceCode": self.service_code,
            "phoneNumber": self.phone_number,
            "networkCode": self.network_code,
            "text": "*".join(self.inputs),
        }
        response = self._client.post(self.callback_url, data=form)
        response.raise_for_status()
        reply = response.text
        if not reply.startswith(("CON ", "END ")):
            raise UssdProtocolError(
                f"the app replied {reply[:40]!r}, which starts with neither "
                "'CON ' nor 'END '"
            )
        self.replies.append(reply)
        return reply
