"""Delivery reports: per-number plans and the worker threads that POST them.

After a successful send, AT POSTs form-encoded delivery reports with the fields id,
status, phoneNumber, networkCode, failureReason and retryCount to the callback URL
registered for the account. The reporter does the same from background threads, so
the send reply is never delayed by a slow or failing callback receiver.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from retain_emulator.wire import (
    DEFAULT_FAILURE_REASON,
    STATUSES_WITH_FAILURE_REASON,
    mask_number,
    validate_delivery_status,
)

logger = logging.getLogger(__name__)

# Safaricom's mobile network code (MCC 639, MNC 02).
SAFARICOM_NETWORK_CODE = "63902"


@dataclass(frozen=True)
class DeliveryPlan:
    """Delivery reports that the emulator sends for one number.

    `intermediate_statuses` are reported first, in order, then `final_status`, then
    `duplicates` more copies of the final report. `failure_reason` is sent only with
    Failed and Rejected, and defaults to DeliveryFailure there.
    """

    final_status: str = "Success"
    failure_reason: str | None = None
    intermediate_statuses: tuple[str, ...] = ()
    duplicates: int = 0
    network_code: str = SAFARICOM_NETWORK_CODE
    retry_count: int = 0

    def __post_init__(self) -> None:
        validate_delivery_status(self.final_status)
        for status in self.intermediate_statuses:
            validate_delivery_status(status)
        if self.duplicates < 0:
            raise ValueError(f"duplicates must be 0 or more, got {self.duplicates}")
        if self.retry_count < 0:
            raise ValueError(f"retry_count must be 0 or more, got {self.retry_count}")

    def report_fields(self, message_id: str, number: str) -> list[dict[str, str]]:
        """Return the form fields of every report in the order they are sent."""
        reports = [
            self._fields(message_id, number, status, "")
            for status in self.intermediate_statuses
        ]
        final = self._fields(
            message_id, number, self.final_status, self._final_failure_reason()
        )
        reports.extend(dict(final) for _ in range(1 + self.duplicates))
        return reports

    def _final_failure_reason(self) -> str:
        if self.final_status not in STATUSES_WITH_FAILURE_REASON:
            return ""
        if self.failure_reason is None:
            return DEFAULT_FAILURE_REASON
        return self.failure_reason

    def _fields(
        self, message_id: str, number: str, status: str, failure_reason: str
    ) -> dict[str, str]:
        return {
            "id": message_id,
            "status": status,
            "phoneNumber": number,
            "networkCode": self.network_code,
            "failureReason": failure_reason,
            "retryCount": str(self.retry_count),
        }


@dataclass
class ReportRecord:
    """One delivery report and the outcome of POSTing it to the callback URL."""

    fields: dict[str, str]
    outcome: str = "pending"
    attempts: int = 0
    last_http_status: int | None = None
    last_error: str = ""
    delivered_at: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            **self.fields,
            "outcome": self.outcome,
            "attempts": self.attempts,
            "lastHttpStatus": self.last_http_status,
            "lastError": self.last_error,
            "deliveredAt": self.delivered_at,
        }


@dataclass
class _ReportChain:
    """The reports of one message. Each is sent only after the previous one ends."""

    records: list[ReportRecord]
    index: int = 0

    @property
    def current(self) -> ReportRecord:
        return self.records[self.index]


@dataclass(order=True)
class _Job:
    due: float
    sequence: int
    chain: _ReportChain = field(compare=False)


class RepeatedLogLimiter:
    """Allow at most `limit` log lines per `window` seconds and count the rest."""

    def __init__(self, limit: int = 20, window: float = 10.0) -> None:
        self._limit = limit
        self._window = window
        self._lock = threading.Lock()
        self._window_start = time.monotonic()
        self._logged = 0
        self._suppressed = 0

    def allow(self) -> tuple[bool, int]:
        """Return whether to log now and how many lines were suppressed before."""
        with self._lock:
            now = time.monotonic()
            if now - self._window_start >= self._window:
                self._window_start = now
                self._logged = 0
            if self._logged >= self._limit:
                self._suppressed += 1
                return False, 0
            self._logged += 1
            suppressed, self._suppressed = self._suppressed, 0
            return True, suppressed


def validate_callback_url(url: str | None) -> None:
    """Raise ValueError unless the URL is None or an http(s) URL with a host."""
    if url is None:
        return
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"invalid callback URL {url!r}: expected an http(s) URL")


def redact_url(url: str | None) -> str:
    """Return the URL without user info, query and fragment, which may contain tokens."""
    if url is None:
        return "none"
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def utc_timestamp() -> str:
    """Return the current UTC time in ISO 8601 form with milliseconds."""
    now = datetime.now(UTC)
    return now.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class DeliveryReporter:
    """Schedule delivery reports and POST them from a pool of worker threads.

    Reports of one message are sent in order: the next one is scheduled `delay`
    seconds after the previous one was accepted or given up. A POST that fails with a
    transport error or a non-2xx status is retried up to `max_attempts` times in all,
    waiting `backoff` seconds and doubling the wait after each failure.
    """

    def __init__(
        self,
        callback_url: str | None,
        *,
        delay: float = 0.05,
        max_attempts: int = 4,
        backoff: float = 0.1,
        timeout: float = 2.0,
        workers: int = 4,
        client_factory: Callable[[], httpx.Client] | None = None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be 1 or more, got {max_attempts}")
        if workers < 1:
            raise ValueError(f"workers must be 1 or more, got {workers}")
        validate_callback_url(callback_url)
        self._callback_url = callback_url
        self._delay = delay
        self._max_attempts = max_attempts
        self._backoff = backoff
        self._timeout = timeout
        self._worker_count = workers
        self._client_factory = client_factory or self._default_client
        self._condition = threading.Condition()
        self._queue: list[_Job] = []
        self._sequence = itertools.count()
        self._in_flight = 0
        self._stopping = False
        self._threads: list[threading.Thread] = []
        self._records: list[ReportRecord] = []
        self._log_limiter = RepeatedLogLimiter()

    @property
    def callback_url(self) -> str | None:
        with self._condition:
            return self._callback_url

    def set_callback_url(self, url: str | None) -> None:
        """Set the callback URL for every later POST, queued reports included.

        None turns reports off, and queued reports are dropped when they fall due.
        """
        validate_callback_url(url)
        with self._condition:
            self._callback_url = url

    def start(self) -> None:
        with self._condition:
            self._stopping = False
        for index in range(self._worker_count):
            thread = threading.Thread(
                target=self._run_worker,
                name=f"at-emulator-reports-{index}",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the workers. Reports that are still queued are dropped."""
        with self._condition:
            self._stopping = True
            dropped = len(self._queue)
            self._queue.clear()
            self._condition.notify_all()
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()
        if dropped:
            logger.info("Dropped %d queued delivery reports on stop", dropped)

    def schedule(self, message_id: str, number: str, plan: DeliveryPlan) -> bool:
        """Queue the reports of one accepted message. Return False when reports are off."""
        with self._condition:
            if self._callback_url is None or self._stopping:
                return False
            records = [
                ReportRecord(fields)
                for fields in plan.report_fields(message_id, number)
            ]
            self._records.extend(records)
            self._push(_ReportChain(records), time.monotonic() + self._delay)
            return True

    def records(self) -> list[dict[str, Any]]:
        with self._condition:
            return [record.to_json() for record in self._records]

    def clear_records(self) -> None:
        with self._condition:
            self._records.clear()

    def wait_idle(self, timeout: float) -> bool:
        """Block until no report is queued or being sent. Return False on timeout."""
        deadline = time.monotonic() + timeout
        with self._condition:
            while self._queue or self._in_flight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._condition.wait(remaining)
            return True

    def _push(self, chain: _ReportChain, due: float) -> None:
        heapq.heappush(self._queue, _Job(due, next(self._sequence), chain))
        self._condition.notify()

    def _default_client(self) -> httpx.Client:
        return httpx.Client(timeout=self._timeout)

    def _run_worker(self) -> None:
        # The HTTP client is created on the first job, so an emulator without a
        # callback URL never pays for building TLS contexts.
        client: httpx.Client | None = None
        try:
            while True:
                job = self._next_due_job()
                if job is None:
                    return
                try:
                    if client is None:
                        client = self._client_factory()
                    self._send(client, job.chain)
                except Exception:
                    logger.exception(
                        "Delivery report %s failed with an internal error",
                        job.chain.current.fields["id"],
                    )
                    self._finish(job.chain, "failed", "internal error in the emulator")
                finally:
                    with self._condition:
                        self._in_flight -= 1
                        self._condition.notify_all()
        finally:
            if client is not None:
                client.close()

    def _next_due_job(self) -> _Job | None:
        """Wait for the earliest job to fall due and claim it. None means stop."""
        with self._condition:
            while True:
                if self._stopping:
                    return None
                if not self._queue:
                    self._condition.wait()
                    continue
                wait = self._queue[0].due - time.monotonic()
                if wait > 0:
                    self._condition.wait(wait)
                    continue
                self._in_flight += 1
                return heapq.heappop(self._queue)

    def _send(self, client: httpx.Client, chain: _ReportChain) -> None:
        record = chain.current
        url = self.callback_url
        with self._condition:
            record.attempts += 1
            attempt = record.attempts
        if url is None:
            self._finish(chain, "dropped", "callback URL was removed")
            return

        try:
            response = client.post(url, data=record.fields)
        except (httpx.HTTPError, httpx.InvalidURL) as error:
            self._handle_failure(
                chain, attempt, None, f"{type(error).__name__}: {error}"
            )
            return

        if response.is_success:
            with self._condition:
                record.last_http_status = response.status_code
                record.delivered_at = utc_timestamp()
            self._finish(chain, "delivered", "")
        else:
            error_text = f"HTTP {response.status_code}"
            self._handle_failure(chain, attempt, response.status_code, error_text)

    def _handle_failure(
        self, chain: _ReportChain, attempt: int, http_status: int | None, error: str
    ) -> None:
        record = chain.current
        with self._condition:
            record.last_http_status = http_status
            record.last_error = error

        if attempt >= self._max_attempts:
            logger.error(
                "Delivery report %s (%s, %s) failed after %d attempts: %s",
                record.fields["id"],
                record.fields["status"],
                mask_number(record.fields["phoneNumber"]),
                attempt,
                error,
            )
            self._finish(chain, "failed", error)
            return

        wait = self._backoff * 2 ** (attempt - 1)
        allowed, suppressed = self._log_limiter.allow()
        if allowed:
            logger.warning(
                "Delivery report %s (%s, %s) attempt %d/%d failed: %s; "
                "retrying in %.2f s (%d similar warnings suppressed)",
                record.fields["id"],
                record.fields["status"],
                mask_number(record.fields["phoneNumber"]),
                attempt,
                self._max_attempts,
                error,
                wait,
                suppressed,
            )
        with self._condition:
            if not self._stopping:
                self._push(chain, time.monotonic() + wait)

    def _finish(self, chain: _ReportChain, outcome: str, error: str) -> None:
        """Record the outcome of the current report and schedule the next one."""
        with self._condition:
            chain.current.outcome = outcome
            if error:
                chain.current.last_error = error
            if self._stopping or chain.index + 1 >= len(chain.records):
                return
            chain.index += 1
            self._push(chain, time.monotonic() + self._delay)
