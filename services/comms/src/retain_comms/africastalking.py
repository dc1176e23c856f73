"""A client of Africa's Talking's SMS and voice APIs, the same for the
emulator and the real service.

Errors:

ProviderError            the provider did not take the message: nothing was sent
 +-- ProviderUnavailable  connection failures or HTTP 5xx on every attempt
 +-- ProviderRejected     HTTP 4xx, for example wrong credentials

A send or call that may have reached the provider is never retried, such as
one that timed out reading the reply or lost its connection after the request
went out. It returns the UNKNOWN outcome, because a message lost is better
than a message sent twice.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import json
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
from retain_runtime.errors import InvalidArgument
from retain_runtime.logs import mask_phone
from retain_runtime.money import KES, parse_provider_cost

log = logging.getLogger(__name__)

ResultT = TypeVar("ResultT", "SendResult", "CallResult")

# Recipient statuses meaning the provider took the message: 100 Processed,
# 101 Success (documented as "Sent"), 102 Queued.
_ACCEPTED = frozenset({"Processed", "Success", "Sent", "Queued"})

# The voice API's status of a call it accepted and will place.
_CALL_QUEUED = "Queued"

# The emulator's reply to a send of 100 recipients, in AT's format, is 15 KB.
# A longer reply is not read.
MAX_REPLY_BYTES = 4 * 2**20

# Errors raised before any byte of the request reached the provider: no
# connection, or none free in the pool within the connect timeout.
_NOT_SENT_ERRORS = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)

# Errors after which the request may have reached the provider: a reply that
# timed out, a connection closed or reset, a reply that is not HTTP.
_AFTER_SEND_ERRORS = (aiohttp.ClientError, TimeoutError)


class Outcome(enum.StrEnum):
    SUBMITTED = "submitted"
    FAILED = "failed"
    BLACKLISTED = "blacklisted"
    INSUFFICIENT_BALANCE = "insufficient_balance"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class SendResult:
    """The provider's verdict on one message."""

    outcome: Outcome
    provider_status: str = ""
    provider_message_id: str = ""
    cost_micros: int = 0
    currency: str = KES
    reason: str = ""


@dataclass(frozen=True)
class CallResult:
    """The provider's verdict on one voice call: SUBMITTED once it is queued."""

    outcome: Outcome
    provider_status: str = ""
    # session_id is AT's sessionId, which the voice callbacks of the call carry.
    session_id: str = ""
    reason: str = ""


@dataclass(frozen=True)
class Reply:
    """An HTTP reply read in full."""

    status_code: int
    content: bytes
    # location is the Location header of a redirect.
    location: str = ""

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.content)


class ProviderError(Exception):
    """Raised when the provider did not take the request; nothing was sent."""


class ProviderUnavailable(ProviderError):
    """Raised when every attempt failed to connect or got HTTP 5xx."""


class ProviderRejected(ProviderError):
    """Raised when the provider answered HTTP 4xx, for example to a wrong key."""


class AfricasTalkingClient:
    """Sends SMS, places voice calls and reads the balance over HTTPS with
    retries and timeouts.

    Voice calls go to voice_base_url, a host apart from the SMS API, from the
    AT phone number voice_number.
    """

    def __init__(
        self,
        base_url: str,
        username: str,
        api_key: str,
        sender_id: str = "",
        timeout_seconds: float = 10.0,
        max_attempts: int = 3,
        backoff_seconds: float = 0.5,
        *,
        voice_base_url: str = "",
        voice_number: str = "",
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.voice_base_url = voice_base_url.rstrip("/")
        self.voice_number = voice_number
        self.username = username
        self.sender_id = sender_id
        self.max_attempts = max_attempts
        self.backoff_seconds = backoff_seconds
        self._headers = {"apiKey": api_key, "Accept": "application/json"}
        # The total includes the connect time. A connection that never opens
        # then fails as a connect timeout, which is retried, before the total
        # runs out, which is not retried.
        connect_seconds = min(5.0, timeout_seconds)
        self._timeout = aiohttp.ClientTimeout(
            total=connect_seconds + timeout_seconds, connect=connect_seconds
        )
        # aiohttp's session belongs to the event loop it is made in, so it is
        # made at the first request. aiohttp used 0.27 ms of CPU per request
        # against httpx's 1.1 ms, and a campaign of personalised texts makes
        # one request per message.
        self._http: aiohttp.ClientSession | None = None

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession(
                headers=self._headers, timeout=self._timeout
            )
        return self._http

    async def send(self, phone_number: str, text: str) -> SendResult:
        """Send one SMS to one number and return the provider's verdict."""
        return (await self.send_bulk([phone_number], text))[phone_number]

    async def send_bulk(
        self, phone_numbers: Sequence[str], text: str
    ) -> dict[str, SendResult]:
        """Send one text to distinct numbers in one request; return the
        provider's verdict on each number.

        AT lists each recipient's status in the reply. A number missing from
        the reply gets the UNKNOWN outcome, because it may have been sent.
        """
        if len(set(phone_numbers)) != len(phone_numbers):
            raise ValueError("a send request must not name a number twice")
        form = {"username": self.username, "to": ",".join(phone_numbers)}
        form["message"] = text
        if self.sender_id:
            form["from"] = self.sender_id
        try:
            response = await self._request("POST", "/version1/messaging", data=form)
        except _AFTER_SEND_ERRORS as error:
            log.warning(
                "Send to %d numbers, first %s, has an unknown outcome after %s",
                len(phone_numbers),
                mask_phone(phone_numbers[0]),
                type(error).__name__,
            )
            unknown = SendResult(
                Outcome.UNKNOWN, reason=f"{type(error).__name__} after send"
            )
            return dict.fromkeys(phone_numbers, unknown)
        _raise_for_client_error(response)
        return _parse_send_reply(response, phone_numbers)

    async def balance(self) -> tuple[str, int]:
        """Return the account balance as (currency, micros)."""
        try:
            response = await self._request(
                "GET", "/version1/user", params={"username": self.username}
            )
        except _AFTER_SEND_ERRORS as error:
            raise ProviderUnavailable(f"balance read failed: {error!r}") from None
        _raise_for_client_error(response)
        try:
            return parse_provider_cost(response.json()["UserData"]["balance"])
        except (ValueError, KeyError, TypeError, InvalidArgument) as error:
            raise ProviderUnavailable(f"balance reply is malformed: {error}") from None

    async def call(self, phone_number: str) -> CallResult:
        """Ask AT to call one number from the voice number and return its verdict."""
        return (await self.call_bulk([phone_number]))[phone_number]

    async def call_bulk(self, phone_numbers: Sequence[str]) -> dict[str, CallResult]:
        """Ask AT to call distinct numbers from the voice number in one request;
        return its verdict on each number.

        The text read in a call comes later, from the response to the voice
        callback.
        Raises ProviderRejected when no voice number or voice URL is set.
        """
        if not self.voice_number or not self.voice_base_url:
            raise ProviderRejected(
                "no voice number or voice API URL is set; set AT_VOICE_NUMBER "
                "and AT_VOICE_BASE_URL"
            )
        if len(set(phone_numbers)) != len(phone_numbers):
            raise ValueError("a call request must not name a number twice")
        form = {
            "username": self.username,
            "from": self.voice_number,
            "to": ",".join(phone_numbers),
        }
        try:
            response = await self._request(
                "POST", "/call", data=form, base_url=self.voice_base_url
            )
        except _AFTER_SEND_ERRORS as error:
            log.warning(
                "Call to %d numbers, first %s, has an unknown outcome after %s",
                len(phone_numbers),
                mask_phone(phone_numbers[0]),
                type(error).__name__,
            )
            unknown = CallResult(
                Outcome.UNKNOWN, reason=f"{type(error).__name__} after call"
            )
            return dict.fromkeys(phone_numbers, unknown)
        _raise_for_client_error(response)
        return _parse_call_reply(response, phone_numbers)

    async def _request(
        self, method: str, path: str, *, base_url: str = "", **kwargs: Any
    ) -> Reply:
        """Make one request, retrying connection failures and HTTP 5xx with
        exponential backoff and jitter. base_url defaults to the SMS API."""
        url = (base_url or self.base_url) + path
        for attempt in range(1, self.max_attempts + 1):
            try:
                response = await self._attempt(method, url, **kwargs)
            except _NOT_SENT_ERRORS as error:
                failure = f"{type(error).__name__}: {error}"
            else:
                if not 500 <= response.status_code < 600:
                    return response
                failure = f"HTTP {response.status_code}"
            if attempt == self.max_attempts:
                raise ProviderUnavailable(
                    f"{method} {path} failed {attempt} times, last with {failure}"
                )
            delay = self.backoff_seconds * 2 ** (attempt - 1) * random.uniform(0.5, 1.5)
            log.info(
                "Retrying %s %s in %.2f s after attempt %d failed with %s",
                method,
                path,
                delay,
                attempt,
                failure,
            )
            await asyncio.sleep(delay)
        raise AssertionError("unreachable: the loop returns or raises")

    async def _attempt(self, method: str, url: str, **kwargs: Any) -> Reply:
        """Make one HTTP request and read its reply, up to MAX_REPLY_BYTES.

        A redirect is not followed, because the request would go to another
        host with the API key; _raise_for_client_error rejects it.
        """
        session = self._session()
        async with session.request(
            method, url, allow_redirects=False, **kwargs
        ) as reply:
            location = reply.headers.get("Location", "")
            chunks, size = [], 0
            async for chunk in reply.content.iter_chunked(2**16):
                size += len(chunk)
                if size > MAX_REPLY_BYTES:
                    # An empty body reads as an unreadable reply, so the
                    # outcome of a send is unknown.
                    log.warning("Reply to %s %s is over %d bytes", method, url, size)
                    return Reply(reply.status, b"", location)
                chunks.append(chunk)
            return Reply(reply.status, b"".join(chunks), location)


def _raise_for_client_error(response: Reply) -> None:
    if 300 <= response.status_code < 400 and response.status_code != 303:
        # The server did not act on the request at this address. A 303 means
        # that it did, so the send's outcome is unknown.
        raise ProviderRejected(
            f"HTTP {response.status_code} from Africa's Talking redirects to "
            f"{response.location[:200]!r}; set AT_BASE_URL (or AT_VOICE_BASE_URL) "
            "to the address that serves the API"
        )
    if 400 <= response.status_code < 500:
        raise ProviderRejected(
            f"HTTP {response.status_code} from Africa's Talking: {response.text[:200]}"
        )


def _parse_send_reply(
    response: Reply, phone_numbers: Sequence[str]
) -> dict[str, SendResult]:
    """Read each recipient's status from a 2xx send reply."""
    try:
        data = response.json()["SMSMessageData"]
        recipients = [
            (str(entry["number"]), dict(entry))
            for entry in data.get("Recipients") or []
        ]
        summary = str(data.get("Message", ""))
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
        log.warning("Send reply for %d numbers is not AT's JSON", len(phone_numbers))
        unreadable = SendResult(Outcome.UNKNOWN, reason="unreadable send reply")
        return dict.fromkeys(phone_numbers, unreadable)
    return _verdicts(
        phone_numbers,
        recipients,
        summary,
        SendResult,
        _recipient_result,
        _ReplyReasons(
            "Send", "send reply without recipients", "no status in the send reply"
        ),
    )


def _parse_call_reply(
    response: Reply, phone_numbers: Sequence[str]
) -> dict[str, CallResult]:
    """Read each number's entry from a 2xx call reply."""
    try:
        data = response.json()
        entries = [
            (str(entry.get("phoneNumber", "")), dict(entry))
            for entry in data.get("entries") or []
        ]
        error_message = str(data.get("errorMessage") or "")
    except (ValueError, AttributeError, TypeError, RecursionError):
        log.warning("Call reply for %d numbers is not AT's JSON", len(phone_numbers))
        unreadable = CallResult(Outcome.UNKNOWN, reason="unreadable call reply")
        return dict.fromkeys(phone_numbers, unreadable)
    return _verdicts(
        phone_numbers,
        entries,
        error_message,
        CallResult,
        _call_entry_result,
        _ReplyReasons(
            "Call", "call reply without entries", "no entry in the call reply"
        ),
    )


@dataclass(frozen=True)
class _ReplyReasons:
    """The words a reply's verdicts use: the request kind for logs, and the
    reasons of a reply without entries and of a number without an entry."""

    kind: str
    empty: str
    missing: str


def _verdicts(
    phone_numbers: Sequence[str],
    entries: list[tuple[str, dict[str, Any]]],
    summary: str,
    result: Callable[..., ResultT],
    entry_result: Callable[[dict[str, Any]], ResultT],
    reasons: _ReplyReasons,
) -> dict[str, ResultT]:
    """Return each number's verdict from the (number, entry) pairs of a reply
    and its request-wide message."""
    if not entries and not summary:
        log.warning(
            "%s reply for %d numbers names no number", reasons.kind, len(phone_numbers)
        )
        return dict.fromkeys(
            phone_numbers, result(Outcome.UNKNOWN, reason=reasons.empty)
        )
    if not entries:
        # AT reports a request-wide problem, such as InvalidSenderId or an
        # unknown from number, this way.
        failed = result(Outcome.FAILED, provider_status=summary, reason=summary)
        return dict.fromkeys(phone_numbers, failed)
    if len(phone_numbers) == 1 and len(entries) == 1:
        # One entry needs no match by number, whatever form AT writes it in.
        return {phone_numbers[0]: entry_result(entries[0][1])}
    missing = result(Outcome.UNKNOWN, reason=reasons.missing)
    # A number listed twice may have been sent whatever its other entry states.
    twice = result(Outcome.UNKNOWN, reason="number listed twice in the reply")
    counts = collections.Counter(number for number, _ in entries)
    by_number = dict(entries)
    verdicts = {}
    for number in phone_numbers:
        if counts[number] > 1:
            verdicts[number] = twice
        elif number in by_number:
            verdicts[number] = entry_result(by_number[number])
        else:
            verdicts[number] = missing
    return verdicts


def _call_entry_result(entry: dict[str, Any]) -> CallResult:
    status = str(entry.get("status", ""))
    if status != _CALL_QUEUED:
        return CallResult(Outcome.FAILED, provider_status=status, reason=status)
    return CallResult(
        Outcome.SUBMITTED,
        provider_status=status,
        session_id=str(entry.get("sessionId", "")),
    )


def _recipient_result(recipient: dict[str, Any]) -> SendResult:
    status = str(recipient.get("status", ""))
    if not status:
        return SendResult(Outcome.UNKNOWN, reason="no status in the send reply")
    if status not in _ACCEPTED:
        if status == "UserInBlacklist":
            return SendResult(
                Outcome.BLACKLISTED, provider_status=status, reason=status
            )
        if status == "InsufficientBalance":
            return SendResult(
                Outcome.INSUFFICIENT_BALANCE, provider_status=status, reason=status
            )
        return SendResult(Outcome.FAILED, provider_status=status, reason=status)
    try:
        currency, cost = parse_provider_cost(str(recipient.get("cost", "0")))
    except InvalidArgument:
        log.warning(
            "Unreadable cost %r for message %s",
            recipient.get("cost"),
            recipient.get("messageId"),
        )
        currency, cost = KES, 0
    return SendResult(
        Outcome.SUBMITTED,
        provider_status=status,
        provider_message_id=str(recipient.get("messageId", "")),
        cost_micros=cost,
        currency=currency,
    )
