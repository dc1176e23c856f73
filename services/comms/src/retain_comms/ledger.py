"""The message ledger: one row per campaign and customer, moved by
compare-and-set.

Every state change is ``UPDATE messages SET state = :target ... WHERE
message_id = :id AND state = ANY(:sources) RETURNING ...``. The sources must
be states that ALLOWED_MOVES lets reach the target, so a final state is never
overwritten and a duplicate queue message or delivery report changes nothing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from retain.type.v1 import channel_pb2
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from retain_comms.states import (
    ALLOWED_MOVES,
    CAPPED_STATES,
    CampaignStatus,
    MessageState,
)
from retain_comms.store import Row, move_campaign
from retain_comms.tables import (
    assignments,
    control,
    delivery_reports,
    messages,
)

# The provider ids among :ids that a message carries.
_CARRIED_PROVIDER_IDS = sa.text(
    "SELECT DISTINCT provider_message_id FROM messages "
    "WHERE provider_message_id = ANY(CAST(:ids AS text[]))"
)

# Moves SUBMITTED messages by reports, at most one report per provider id. A
# NULL reason keeps the message's reason, a cost of 0 its cost.
_APPLY_REPORTS = sa.text(
    """
    UPDATE messages AS m SET
        state = r.target,
        provider_status = r.status,
        reason = COALESCE(r.reason, m.reason),
        cost_micros = CASE WHEN r.cost_micros > 0 THEN r.cost_micros
                      ELSE m.cost_micros END,
        cost_currency = CASE WHEN r.cost_micros > 0 THEN r.cost_currency
                        ELSE m.cost_currency END,
        update_time = :now
    FROM unnest(
        CAST(:provider_ids AS text[]), CAST(:targets AS text[]),
        CAST(:statuses AS text[]), CAST(:reasons AS text[]),
        CAST(:costs AS bigint[]), CAST(:currencies AS text[])
    ) AS r(provider_message_id, target, status, reason, cost_micros, cost_currency)
    WHERE m.provider_message_id = r.provider_message_id AND m.state = 'submitted'
    """
)

_MARK_APPLIED = sa.text(
    "UPDATE delivery_reports SET applied = true "
    "WHERE report_id = ANY(CAST(:ids AS bigint[]))"
)


@dataclass(frozen=True)
class ReportMove:
    """The change one stored delivery report makes to a SUBMITTED message:
    move it to target and set provider_status, reason unless it is None, and
    the cost unless it is 0. Only a voice call's final callback states a
    cost."""

    report_id: int
    provider_message_id: str
    target: MessageState
    status: str
    reason: str | None = None
    cost_micros: int = 0
    cost_currency: str = ""


class StaleLaunch(Exception):
    """Raised when a launch finds its campaign no longer APPROVED."""


class StoppedLaunch(Exception):
    """Raised when a launch finds the global stop set."""


class Ledger:
    """Queries on the message ledger and the delivery reports."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def move(
        self,
        message_id: int,
        sources: Iterable[MessageState],
        target: MessageState,
        now: dt.datetime,
        **values: Any,
    ) -> Row | None:
        """Move one message from one of sources to target; None if it was not
        in a source state."""
        allowed = checked_sources(sources, target)
        async with self.engine.begin() as conn:
            result = await conn.execute(
                sa.update(messages)
                .where(
                    messages.c.message_id == message_id,
                    messages.c.state.in_(allowed),
                )
                .values(state=target, update_time=now, **values)
                .returning(messages)
            )
            return result.one_or_none()

    async def move_where(
        self,
        sources: Iterable[MessageState],
        target: MessageState,
        condition: sa.ColumnElement[bool],
        now: dt.datetime,
        **values: Any,
    ) -> list[int]:
        """Move every message matching condition from sources to target, by the
        same compare-and-set; return the ids moved."""
        allowed = checked_sources(sources, target)
        async with self.engine.begin() as conn:
            result = await conn.execute(
                sa.update(messages)
                .where(messages.c.state.in_(allowed), condition)
                .values(state=target, update_time=now, **values)
                .returning(messages.c.message_id)
            )
            return sorted(result.scalars().all())

    async def touch_pending(
        self, condition: sa.ColumnElement[bool], now: dt.datetime
    ) -> list[int]:
        """Set update_time of matching PENDING messages to now; return their ids."""
        async with self.engine.begin() as conn:
            result = await conn.execute(
                sa.update(messages)
                .where(messages.c.state == MessageState.PENDING, condition)
                .values(update_time=now)
                .returning(messages.c.message_id)
            )
            return sorted(result.scalars().all())

    async def pending_ids(self, campaign_id: int) -> list[int]:
        query = sa.select(messages.c.message_id).where(
            messages.c.campaign_id == campaign_id,
            messages.c.state == MessageState.PENDING,
        )
        async with self.engine.connect() as conn:
            return sorted((await conn.execute(query)).scalars().all())

    async def list_messages(
        self,
        campaign_id: int,
        state: MessageState | None,
        after: int | None,
        limit: int,
    ) -> Sequence[Row]:
        query = (
            sa.select(messages)
            .where(messages.c.campaign_id == campaign_id)
            .order_by(messages.c.message_id)
            .limit(limit)
        )
        if state is not None:
            query = query.where(messages.c.state == state)
        if after is not None:
            query = query.where(messages.c.message_id > after)
        async with self.engine.connect() as conn:
            return (await conn.execute(query)).all()

    async def templates_of(self, campaign_id: int) -> list[tuple[str, str]]:
        """Return the distinct (language, template) pairs of a campaign's messages."""
        query = (
            sa.select(messages.c.language, messages.c.template)
            .where(messages.c.campaign_id == campaign_id)
            .distinct()
            .order_by(messages.c.language, messages.c.template)
        )
        async with self.engine.connect() as conn:
            return [(row[0], row[1]) for row in (await conn.execute(query)).all()]

    async def state_counts(self, campaign_id: int) -> dict[MessageState, int]:
        query = (
            sa.select(messages.c.state, sa.func.count())
            .where(messages.c.campaign_id == campaign_id)
            .group_by(messages.c.state)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return {MessageState(row[0]): int(row[1]) for row in rows}

    async def recent_marketing_counts(
        self, customer_ids: Sequence[int], since: dt.datetime
    ) -> dict[int, int]:
        """Count each customer's marketing messages created since a moment, in
        every campaign, that went out or are about to."""
        query = (
            sa.select(messages.c.customer_id, sa.func.count())
            .where(
                messages.c.customer_id.in_(customer_ids),
                messages.c.purpose == channel_pb2.PURPOSE_MARKETING,
                messages.c.state.in_(CAPPED_STATES),
                messages.c.create_time >= since,
            )
            .group_by(messages.c.customer_id)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return {int(row[0]): int(row[1]) for row in rows}

    async def arm_members(self, campaign_id: int) -> dict[str, list[int]]:
        """Return the customer ids of the treatment and control arms."""
        query = sa.select(assignments.c.arm, assignments.c.customer_id).where(
            assignments.c.campaign_id == campaign_id,
            assignments.c.arm.in_(["treatment", "control"]),
        )
        members: dict[str, list[int]] = {"treatment": [], "control": []}
        async with self.engine.connect() as conn:
            for arm, customer_id in (await conn.execute(query)).all():
                members[arm].append(int(customer_id))
        return members

    async def write_launch(
        self,
        campaign_id: int,
        campaign_values: dict[str, Any],
        assignment_rows: list[dict[str, Any]],
        message_rows: list[dict[str, Any]],
        now: dt.datetime,
    ) -> list[int]:
        """Mark the campaign RUNNING and write its assignments and messages in
        one transaction; return the ids of the PENDING messages.

        Raises StoppedLaunch under the global stop and StaleLaunch when the
        campaign is no longer APPROVED, writing nothing in either case.
        """
        async with self.engine.begin() as conn:
            # FOR SHARE waits for a StopAllCampaigns that is committing.
            stopped = await conn.scalar(
                sa.select(control.c.stopped).with_for_update(read=True)
            )
            if stopped:
                raise StoppedLaunch()
            row = await move_campaign(
                conn,
                campaign_id,
                [CampaignStatus.APPROVED],
                CampaignStatus.RUNNING,
                now,
                **campaign_values,
            )
            if row is None:
                raise StaleLaunch()
            await _copy_rows(conn, assignments, assignment_rows)
            await _copy_rows(conn, messages, message_rows)
            result = await conn.execute(
                sa.select(messages.c.message_id)
                .where(
                    messages.c.campaign_id == campaign_id,
                    messages.c.state == MessageState.PENDING,
                )
                .order_by(messages.c.message_id)
            )
            return list(result.scalars().all())

    # Delivery reports

    async def add_report(self, values: dict[str, Any]) -> int:
        [report_id] = await self.add_reports([values])
        return report_id

    async def add_reports(self, rows: Sequence[dict[str, Any]]) -> list[int]:
        """Store reports, not applied yet, in one transaction; return their
        ids in the order of rows. Every row must have the same keys."""
        statement = sa.insert(delivery_reports).returning(
            delivery_reports.c.report_id, sort_by_parameter_order=True
        )
        async with self.engine.begin() as conn:
            result = await conn.execute(
                statement, [{"applied": False, **row} for row in rows]
            )
            return [int(report_id) for report_id in result.scalars()]

    async def find_by_provider_id(self, provider_message_id: str) -> Row | None:
        query = sa.select(messages).where(
            messages.c.provider_message_id == provider_message_id
        )
        async with self.engine.connect() as conn:
            return (await conn.execute(query)).one_or_none()

    async def latest_voice_call(self, customer_ids: Sequence[int]) -> Row | None:
        """Return the most recently claimed voice message of the customers that
        is SENDING or SUBMITTED, or None."""
        if not customer_ids:
            return None
        query = (
            sa.select(messages)
            .where(
                messages.c.customer_id.in_(list(customer_ids)),
                messages.c.channel == channel_pb2.CHANNEL_VOICE,
                messages.c.state.in_([MessageState.SENDING, MessageState.SUBMITTED]),
            )
            .order_by(messages.c.update_time.desc())
            .limit(1)
        )
        async with self.engine.connect() as conn:
            return (await conn.execute(query)).one_or_none()

    async def unapplied_reports(self, provider_message_id: str) -> Sequence[Row]:
        query = (
            sa.select(delivery_reports)
            .where(
                delivery_reports.c.provider_message_id == provider_message_id,
                sa.not_(delivery_reports.c.applied),
            )
            .order_by(delivery_reports.c.report_id)
        )
        async with self.engine.connect() as conn:
            return (await conn.execute(query)).all()

    async def apply_reports(
        self, moves: Sequence[ReportMove], now: dt.datetime
    ) -> set[str]:
        """Apply stored reports, in their order, to the SUBMITTED messages that
        carry their provider ids, and mark those reports applied. Return the
        provider ids that a message carries. It all takes one transaction.

        A report whose provider id no message carries changes nothing. A
        message in another state keeps it, and its report is marked applied
        all the same, because a final state is never overwritten.
        """
        for target in {move.target for move in moves}:
            checked_sources([MessageState.SUBMITTED], target)
        provider_ids = sorted({move.provider_message_id for move in moves})
        async with self.engine.begin() as conn:
            known = set(
                (
                    await conn.execute(_CARRIED_PROVIDER_IDS, {"ids": provider_ids})
                ).scalars()
            )
            # The n-th reports of each provider id go in the n-th UPDATE, so
            # two reports of one message apply in the order they came.
            rounds: list[list[ReportMove]] = []
            seen: dict[str, int] = {}
            for move in moves:
                if move.provider_message_id not in known:
                    continue
                order = seen.get(move.provider_message_id, 0)
                seen[move.provider_message_id] = order + 1
                if order == len(rounds):
                    rounds.append([])
                rounds[order].append(move)
            for group in rounds:
                await conn.execute(
                    _APPLY_REPORTS,
                    {
                        "now": now,
                        "provider_ids": [m.provider_message_id for m in group],
                        "targets": [m.target.value for m in group],
                        "statuses": [m.status for m in group],
                        "reasons": [m.reason for m in group],
                        "costs": [m.cost_micros for m in group],
                        "currencies": [m.cost_currency for m in group],
                    },
                )
            applied = [m.report_id for m in moves if m.provider_message_id in known]
            if applied:
                await conn.execute(_MARK_APPLIED, {"ids": applied})
        return known

    async def reports_of_carried_ids(self, limit: int) -> Sequence[Row]:
        """Return, oldest first, up to limit unapplied reports whose provider
        id a message now carries."""
        carried = sa.exists().where(
            messages.c.provider_message_id == delivery_reports.c.provider_message_id
        )
        query = (
            sa.select(delivery_reports)
            .where(sa.not_(delivery_reports.c.applied), carried)
            .order_by(delivery_reports.c.report_id)
            .limit(limit)
        )
        async with self.engine.connect() as conn:
            return (await conn.execute(query)).all()

    async def mark_applied(self, report_id: int) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                sa.update(delivery_reports)
                .where(delivery_reports.c.report_id == report_id)
                .values(applied=True)
            )


async def _copy_rows(
    conn: AsyncConnection, table: sa.Table, rows: list[dict[str, Any]]
) -> None:
    """Insert rows with COPY, many times faster than INSERT for a launch.

    Every row must have the same keys; columns left out take their server
    defaults.
    """
    if not rows:
        return
    columns = list(rows[0])
    raw = await conn.get_raw_connection()
    statement = f"COPY {table.name} ({', '.join(columns)}) FROM STDIN"
    async with (
        raw.driver_connection.cursor() as cursor,
        cursor.copy(statement) as copy,
    ):
        for row in rows:
            await copy.write_row([row[column] for column in columns])


def checked_sources(
    sources: Iterable[MessageState], target: MessageState
) -> list[MessageState]:
    allowed = list(sources)
    for source in allowed:
        if target not in ALLOWED_MOVES.get(source, frozenset()):
            raise ValueError(
                f"the ledger never moves a message from {source} to {target}"
            )
    return allowed
