"""Delivery reports: what each Africa's Talking status does to a message.

Every report is stored raw first, then applied to the message that carries
its provider message id. A report can arrive before the worker has stored that
id, so it waits and the worker applies it right after recording the send. A
report only ever moves a SUBMITTED message, so a repeat, or an intermediate
report after a final one, changes nothing. Reports of test messages, which
are kept apart from the ledger, follow the same rules.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import sqlalchemy.exc
from retain_runtime.clock import Clock
from retain_runtime.errors import Unavailable

from retain_comms.ledger import Ledger, ReportMove
from retain_comms.states import MessageState
from retain_comms.store import Row, Store

log = logging.getLogger(__name__)

DELIVERED_STATUSES = frozenset({"Success"})
FAILED_STATUSES = frozenset({"Failed", "Rejected", "AbsentSubscriber", "Expired"})
INTERMEDIATE_STATUSES = frozenset({"Sent", "Submitted", "Buffered"})
KNOWN_STATUSES = DELIVERED_STATUSES | FAILED_STATUSES | INTERMEDIATE_STATUSES


def report_move(
    status: str, failure_reason: str
) -> tuple[MessageState, dict[str, object]]:
    """Return the state a SUBMITTED message moves to on a report, and the
    columns the report sets besides provider_status."""
    if status in DELIVERED_STATUSES:
        return MessageState.DELIVERED, {}
    if status in FAILED_STATUSES:
        return MessageState.FAILED, {"reason": failure_reason or status}
    # Intermediate and unknown statuses are stored raw; the message stays
    # SUBMITTED until a final report or the report window ends.
    return MessageState.SUBMITTED, {}


def move_of(
    report_id: int,
    provider_message_id: str,
    status: str,
    failure_reason: str,
    cost_micros: int = 0,
    cost_currency: str = "",
) -> ReportMove:
    """Return what a stored report does to the message with its provider id."""
    target, extra = report_move(status, failure_reason)
    reason = extra.get("reason")
    return ReportMove(
        report_id,
        provider_message_id,
        target,
        status,
        None if reason is None else str(reason),
        cost_micros,
        cost_currency,
    )


ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")

# Errors of one statement's data, which another report of the group may cause.
_DATA_ERRORS = (sqlalchemy.exc.DataError, sqlalchemy.exc.IntegrityError)


@dataclass
class _Queued:
    row: dict[str, Any]
    done: asyncio.Future[tuple[int, bool]]


class ReportWriter:
    """Stores delivery reports and applies them to their messages in groups.

    Reports that arrive while a group is being written form the next group,
    so a group takes two transactions however many reports it holds, and a
    lone report waits for nothing. A caller returns once its report is
    committed and applied, as with one report at a time. The report is
    committed before its message is looked up, so a worker that records the
    send after the lookup finds the report waiting and applies it. When the
    database rejects a group's data, its reports go one by one through the
    step that failed, so a report that cannot be written fails only its
    caller. The failed transaction stored nothing, so no report is stored
    twice. Any other error fails the whole group.
    """

    def __init__(self, ledger: Ledger, clock: Clock, max_group: int = 500) -> None:
        self.ledger = ledger
        self.clock = clock
        self.max_group = max_group
        self._queued: list[_Queued] = []
        # _group is the group being written, for stop to fail.
        self._group: list[_Queued] = []
        self._writing: asyncio.Task[None] | None = None

    async def add(self, row: dict[str, Any]) -> tuple[int, bool]:
        """Store and apply one report; return its id and whether a message
        carries its provider id. row contains the delivery_reports columns
        provider_message_id, status, failure_reason, body and receive_time."""
        done = asyncio.get_running_loop().create_future()
        self._queued.append(_Queued(row, done))
        if self._writing is None or self._writing.done():
            self._writing = asyncio.create_task(self._write_all())
        return await done

    async def stop(self) -> None:
        """Stop writing and fail the reports being written or queued. Their
        callbacks then get an error, so AT sends them again."""
        if self._writing is not None:
            self._writing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writing
        stopped = Unavailable("the comms server is stopping; send the report again")
        for queued in self._group + self._queued:
            if not queued.done.done():
                queued.done.set_exception(stopped)
        self._queued.clear()

    async def _write_all(self) -> None:
        while self._queued:
            group = self._group = self._queued[: self.max_group]
            del self._queued[: self.max_group]
            stored = await _in_group_or_alone(
                "Storing",
                [(queued, queued.row) for queued in group],
                self.ledger.add_reports,
            )
            moves = [
                (
                    queued,
                    move_of(
                        report_id,
                        row["provider_message_id"],
                        row["status"],
                        row["failure_reason"],
                    ),
                )
                for queued, row, report_id in stored
            ]
            applied = await _in_group_or_alone("Applying", moves, self._apply)
            for queued, move, carried in applied:
                _answer(queued, (move.report_id, carried))

    async def _apply(self, moves: list[ReportMove]) -> list[bool]:
        """Apply moves in one transaction; return for each whether a message
        carries its provider id."""
        known = await self.ledger.apply_reports(moves, self.clock.now())
        return [move.provider_message_id in known for move in moves]


async def _in_group_or_alone(
    step_name: str,
    items: list[tuple[_Queued, ItemT]],
    step: Callable[[list[ItemT]], Awaitable[list[ResultT]]],
) -> list[tuple[_Queued, ItemT, ResultT]]:
    """Run step once over every item, or over each item alone when the
    database rejects the data of the group. Fail the callers of the items
    that step fails for, and return the others with their results."""
    if not items:
        return []
    try:
        results = await step([item for _, item in items])
    except Exception as error:
        if len(items) == 1 or not isinstance(error, _DATA_ERRORS):
            for queued, _ in items:
                _fail(queued, error, step_name)
            return []
        log.exception(
            "%s a group of %d delivery reports failed; retrying them one by one",
            step_name,
            len(items),
        )
    else:
        return [
            (queued, item, result)
            for (queued, item), result in zip(items, results, strict=True)
        ]
    done = []
    for queued, item in items:
        try:
            [result] = await step([item])
        except Exception as error:  # noqa: BLE001 - handed to the caller
            _fail(queued, error, step_name)
        else:
            done.append((queued, item, result))
    return done


def _answer(queued: _Queued, result: tuple[int, bool]) -> None:
    if not queued.done.done():
        queued.done.set_result(result)


def _fail(queued: _Queued, error: Exception, step: str) -> None:
    # The caller replies to the callback with the error, so AT sends the report
    # again. A repeated report changes nothing.
    log.error(
        "%s the delivery report for %s failed: %r",
        step,
        queued.row["provider_message_id"][:64],
        error,
    )
    if not queued.done.done():
        queued.done.set_exception(error)


async def apply_waiting(
    ledger: Ledger, waiting: Sequence[Row], now: dt.datetime
) -> None:
    """Apply, in arrival order, reports that came before their sends were
    recorded, in one transaction."""
    if not waiting:
        return
    await ledger.apply_reports(
        [
            move_of(
                report.report_id,
                report.provider_message_id,
                report.status,
                report.failure_reason,
                report.cost_micros,
                report.cost_currency,
            )
            for report in waiting
        ],
        now,
    )


async def apply_test_report(
    store: Store,
    provider_message_id: str,
    status: str,
    failure_reason: str,
    now: dt.datetime,
) -> None:
    """Apply one report to the SUBMITTED test message with a provider id."""
    target, extra = report_move(status, failure_reason)
    moved = await store.move_test_message(
        provider_message_id, target, now, provider_status=status, **extra
    )
    if moved is not None:
        log.debug(
            "Test message %d is %s after report %s",
            moved.test_message_id,
            target,
            status,
        )


async def apply_waiting_test_reports(
    store: Store, ledger: Ledger, provider_message_id: str, now: dt.datetime
) -> None:
    """Apply, in arrival order, reports that came before a test send was
    recorded."""
    for report in await ledger.unapplied_reports(provider_message_id):
        await apply_test_report(
            store, provider_message_id, report.status, report.failure_reason, now
        )
        await ledger.mark_applied(report.report_id)
