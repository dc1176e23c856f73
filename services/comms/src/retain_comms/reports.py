"""Delivery reports: what each Africa's Talking status does to a message.

Every report is stored raw first, then applied to the message that carries
its provider message id. A report can arrive before the worker has stored that
id, so it waits and the worker applies it right after recording the send. A
report only ever moves a SUBMITTED message, so a repeat, or an intermediate
report after a final one, changes nothing. Reports of test messages, which
are kept apart from the ledger, follow the same rules.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence

from retain_comms.ledger import Ledger
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


async def apply_report(
    ledger: Ledger,
    message_id: int,
    status: str,
    failure_reason: str,
    now: dt.datetime,
    cost_micros: int = 0,
    cost_currency: str = "",
) -> Row | None:
    """Apply one report to a message; return the moved row, None if unchanged.

    A report with a cost, which only a voice call's final callback has, sets
    the message's cost.
    """
    target, extra = report_move(status, failure_reason)
    if cost_micros:
        extra = {**extra, "cost_micros": cost_micros, "cost_currency": cost_currency}
    moved = await ledger.move(
        message_id,
        [MessageState.SUBMITTED],
        target,
        now,
        provider_status=status,
        **extra,
    )
    if moved is not None:
        log.debug("Message %d is %s after report %s", message_id, target, status)
    return moved


async def apply_waiting(
    ledger: Ledger,
    waiting: Sequence[Row],
    message_ids: dict[str, int],
    now: dt.datetime,
) -> None:
    """Apply, in arrival order, reports that came before their sends were
    recorded; message_ids maps each report's provider id to its message."""
    for report in waiting:
        await apply_report(
            ledger,
            message_ids[report.provider_message_id],
            report.status,
            report.failure_reason,
            now,
            report.cost_micros,
            report.cost_currency,
        )
        await ledger.mark_applied(report.report_id)


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
