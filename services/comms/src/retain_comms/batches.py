"""The worker's queries on the ledger, a few statements per batch of messages.

A batch is loaded with one SELECT, claimed PENDING -> SENDING with one
compare-and-set UPDATE, and its outcomes are recorded with one UPDATE over
arrays of values. The claim runs in one transaction with the frequency cap
check, under an advisory lock per customer, so two workers cannot both send
the marketing message that takes a customer over the cap.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from retain.type.v1 import channel_pb2
from retain_runtime.money import KES
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from retain_comms.ledger import checked_sources
from retain_comms.states import MessageState
from retain_comms.store import Row, running_campaigns
from retain_comms.tables import campaigns, control, delivery_reports, messages

# States of another campaign's message that count towards the frequency cap
# in the worker: it went out or may have. PENDING and DEFERRED messages of
# other campaigns are left out, or two campaigns waiting for one customer
# would each suppress the other.
SENT_STATES = (
    MessageState.SENDING,
    MessageState.SUBMITTED,
    MessageState.DELIVERED,
    MessageState.DELIVERY_UNKNOWN,
)

CAPPED_REASON = "frequency cap: messaged by another campaign since launch"

# Moves to these states happen only from SENDING, in record().
_RECORDED = (
    MessageState.SUBMITTED,
    MessageState.FAILED,
    MessageState.SUPPRESSED,
    MessageState.DELIVERY_UNKNOWN,
)

# One UPDATE for every outcome of a batch. The state check makes it a
# compare-and-set per row, as in Ledger.move.
_RECORD = sa.text(
    """
    UPDATE messages AS m SET
        state = o.state,
        reason = o.reason,
        provider_message_id = o.provider_message_id,
        provider_status = o.provider_status,
        cost_micros = o.cost_micros,
        cost_currency = o.cost_currency,
        attempt_count = o.attempt_count,
        submit_time = CASE WHEN o.state = 'submitted' THEN :now
                      ELSE m.submit_time END,
        update_time = :now
    FROM unnest(
        CAST(:ids AS bigint[]), CAST(:states AS text[]), CAST(:reasons AS text[]),
        CAST(:provider_ids AS text[]), CAST(:statuses AS text[]),
        CAST(:costs AS bigint[]), CAST(:currencies AS text[]),
        CAST(:attempts AS integer[])
    ) AS o(message_id, state, reason, provider_message_id, provider_status,
           cost_micros, cost_currency, attempt_count)
    WHERE m.message_id = o.message_id AND m.state = 'sending'
    RETURNING m.message_id
    """
)

# The comms database takes no other advisory lock, so a customer id is the
# lock key as it is. Locks are taken in id order, so two claims do not
# deadlock on them.
_LOCK_CUSTOMERS = sa.text(
    "SELECT pg_advisory_xact_lock(c) FROM "
    "(SELECT c FROM unnest(CAST(:ids AS bigint[])) AS c ORDER BY c) AS ordered"
)


@dataclass(frozen=True)
class MessageOutcome:
    """The outcome the worker records for one claimed message."""

    message_id: int
    state: MessageState
    reason: str = ""
    provider_message_id: str | None = None
    provider_status: str = ""
    cost_micros: int = 0
    cost_currency: str = KES
    attempt_count: int = 1


@dataclass(frozen=True)
class CapRule:
    """The frequency cap of one message's campaign."""

    max_messages: int
    since: dt.datetime


class BatchLedger:
    """Loads, claims and records batches of messages for the worker."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def load(self, message_ids: Sequence[int]) -> list[Row]:
        """Return the messages with their campaign's status and spec and the
        global stop flag, in id order; unknown ids are left out."""
        query = (
            sa.select(
                messages,
                campaigns.c.status.label("campaign_status"),
                campaigns.c.spec.label("campaign_spec"),
                sa.select(control.c.stopped).scalar_subquery().label("stopped"),
            )
            .join(campaigns, campaigns.c.campaign_id == messages.c.campaign_id)
            .where(messages.c.message_id.in_(list(message_ids)))
            .order_by(messages.c.message_id)
        )
        async with self.engine.connect() as conn:
            return list((await conn.execute(query)).all())

    async def claim(
        self, rows: Sequence[Row], caps: dict[int, CapRule], now: dt.datetime
    ) -> tuple[list[Row], list[int]]:
        """Suppress the messages over their frequency cap, then move the rest
        PENDING -> SENDING if their campaign runs and no global stop is set.

        caps contains the rule of each message that the cap applies to. Returns
        the claimed rows and the ids suppressed by the cap.
        """
        async with self.engine.begin() as conn:
            capped = await _over_cap(
                conn, [r for r in rows if r.message_id in caps], caps
            )
            if capped:
                await conn.execute(
                    sa.update(messages)
                    .where(
                        messages.c.message_id.in_(capped),
                        messages.c.state == MessageState.PENDING,
                    )
                    .values(
                        state=MessageState.SUPPRESSED,
                        reason=CAPPED_REASON,
                        update_time=now,
                    )
                )
            skipped = set(capped)
            ids = [r.message_id for r in rows if r.message_id not in skipped]
            result = await conn.execute(
                sa.update(messages)
                .where(
                    messages.c.message_id.in_(ids),
                    messages.c.state == MessageState.PENDING,
                    messages.c.campaign_id.in_(running_campaigns()),
                )
                .values(state=MessageState.SENDING, update_time=now)
                .returning(messages)
            )
            return list(result.all()), capped

    async def record(
        self, outcomes: Sequence[MessageOutcome], now: dt.datetime
    ) -> set[int]:
        """Move SENDING messages to their outcomes in one statement; return
        the ids moved. A message no longer SENDING is left as it is."""
        if not outcomes:
            return set()
        for state in {outcome.state for outcome in outcomes}:
            if state not in _RECORDED:
                raise ValueError(f"record() never moves a message to {state}")
            checked_sources([MessageState.SENDING], state)
        values = {
            "now": now,
            "ids": [o.message_id for o in outcomes],
            "states": [str(o.state) for o in outcomes],
            "reasons": [o.reason for o in outcomes],
            "provider_ids": [o.provider_message_id for o in outcomes],
            "statuses": [o.provider_status for o in outcomes],
            "costs": [o.cost_micros for o in outcomes],
            "currencies": [o.cost_currency for o in outcomes],
            "attempts": [o.attempt_count for o in outcomes],
        }
        async with self.engine.begin() as conn:
            result = await conn.execute(_RECORD, values)
            return set(result.scalars().all())

    async def release(self, message_ids: Sequence[int], now: dt.datetime) -> list[int]:
        """Move SENDING messages back to PENDING; only when nothing was sent."""
        async with self.engine.begin() as conn:
            result = await conn.execute(
                sa.update(messages)
                .where(
                    messages.c.message_id.in_(list(message_ids)),
                    messages.c.state == MessageState.SENDING,
                )
                .values(state=MessageState.PENDING, update_time=now)
                .returning(messages.c.message_id)
            )
            return sorted(result.scalars().all())

    async def unapplied_reports(self, provider_message_ids: Sequence[str]) -> list[Row]:
        """Return the reports not yet applied for any of the provider ids, in
        arrival order."""
        query = (
            sa.select(delivery_reports)
            .where(
                delivery_reports.c.provider_message_id.in_(list(provider_message_ids)),
                sa.not_(delivery_reports.c.applied),
            )
            .order_by(delivery_reports.c.report_id)
        )
        async with self.engine.connect() as conn:
            return list((await conn.execute(query)).all())


async def _over_cap(
    conn: AsyncConnection, rows: Sequence[Row], caps: dict[int, CapRule]
) -> list[int]:
    """Return the ids of rows whose customer got as many marketing messages
    from other campaigns since the cap's start as the cap allows.

    The advisory locks last until the claim commits, so a claim that runs
    after another one for the same customer reads its SENDING row.
    """
    if not rows:
        return []
    customer_ids = sorted({row.customer_id for row in rows})
    await conn.execute(_LOCK_CUSTOMERS, {"ids": customer_ids})
    sent_time = sa.func.coalesce(messages.c.submit_time, messages.c.update_time)
    earliest = min(caps[row.message_id].since for row in rows)
    query = sa.select(messages.c.customer_id, messages.c.campaign_id, sent_time).where(
        messages.c.customer_id.in_(customer_ids),
        messages.c.purpose == channel_pb2.PURPOSE_MARKETING,
        messages.c.state.in_(SENT_STATES),
        sent_time >= earliest,
    )
    sent: dict[int, list[tuple[int, dt.datetime]]] = {}
    for customer_id, campaign_id, time in (await conn.execute(query)).all():
        sent.setdefault(customer_id, []).append((campaign_id, time))
    capped = []
    for row in rows:
        rule = caps[row.message_id]
        count = sum(
            1
            for campaign_id, time in sent.get(row.customer_id, [])
            if campaign_id != row.campaign_id and time >= rule.since
        )
        if count >= rule.max_messages:
            capped.append(row.message_id)
    return capped
