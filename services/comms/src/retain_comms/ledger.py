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
    campaigns,
    control,
    delivery_reports,
    messages,
)


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

    async def load_for_send(self, message_id: int) -> Row | None:
        """Return a message with its campaign's status and spec and the global
        stop flag, or None for an unknown id."""
        query = (
            sa.select(
                messages,
                campaigns.c.status.label("campaign_status"),
                campaigns.c.spec.label("campaign_spec"),
                sa.select(control.c.stopped).scalar_subquery().label("stopped"),
            )
            .join(campaigns, campaigns.c.campaign_id == messages.c.campaign_id)
            .where(messages.c.message_id == message_id)
        )
        async with self.engine.connect() as conn:
            return (await conn.execute(query)).one_or_none()

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
        async with self.engine.begin() as conn:
            result = await conn.execute(
                sa.insert(delivery_reports)
                .values(applied=False, **values)
                .returning(delivery_reports.c.report_id)
            )
            return int(result.scalar_one())

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

    async def apply_report_by_provider_id(
        self,
        report_id: int,
        provider_message_id: str,
        target: MessageState,
        now: dt.datetime,
        **values: Any,
    ) -> bool:
        """Move the message with a provider id from SUBMITTED to target and
        mark the report applied, in one transaction.

        Returns False, changing nothing, when no message has the provider id.
        A message in another state keeps its state. Its report is marked
        applied all the same, because a final state is never overwritten.
        """
        allowed = checked_sources([MessageState.SUBMITTED], target)
        async with self.engine.begin() as conn:
            message_id = await conn.scalar(
                sa.select(messages.c.message_id)
                .where(messages.c.provider_message_id == provider_message_id)
                .limit(1)
            )
            if message_id is None:
                return False
            await conn.execute(
                sa.update(messages)
                .where(
                    messages.c.message_id == message_id,
                    messages.c.state.in_(allowed),
                )
                .values(state=target, update_time=now, **values)
            )
            await conn.execute(
                sa.update(delivery_reports)
                .where(delivery_reports.c.report_id == report_id)
                .values(applied=True)
            )
            return True

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
