"""Campaign rows, the global stop, alerts, inbound messages and test messages.

The message ledger itself is in ledger.py. Every status change of a campaign
is a compare-and-set: the UPDATE names the statuses it may leave, so two
callers racing on one campaign cannot both win.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from retain_comms.states import RESERVED_STATES, CampaignStatus, MessageState
from retain_comms.tables import (
    alerts,
    campaigns,
    control,
    inbound_messages,
    messages,
    test_messages,
)

Row = sa.Row[Any]

# Message states whose cost counts as spend.
_SPENT_STATES = (
    MessageState.SUBMITTED,
    MessageState.DELIVERED,
    MessageState.FAILED,
    MessageState.DELIVERY_UNKNOWN,
)


class Store:
    """Queries on campaigns, the global stop, alerts, inbound messages and test
    messages."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    # Campaigns

    async def create_campaign(self, values: dict[str, Any]) -> Row:
        async with self.engine.begin() as conn:
            result = await conn.execute(
                sa.insert(campaigns).values(**values).returning(campaigns)
            )
            return result.one()

    async def get_campaign(self, campaign_id: int) -> Row | None:
        async with self.engine.connect() as conn:
            result = await conn.execute(
                sa.select(campaigns).where(campaigns.c.campaign_id == campaign_id)
            )
            return result.one_or_none()

    async def list_campaigns(self, after: int | None, limit: int) -> Sequence[Row]:
        """Return campaigns newest first, starting below the id after."""
        query = sa.select(campaigns).order_by(campaigns.c.campaign_id.desc())
        if after is not None:
            query = query.where(campaigns.c.campaign_id < after)
        async with self.engine.connect() as conn:
            return (await conn.execute(query.limit(limit))).all()

    async def move_campaign(
        self,
        campaign_id: int,
        sources: Iterable[CampaignStatus],
        target: CampaignStatus,
        now: dt.datetime,
        **values: Any,
    ) -> Row | None:
        """Move a campaign to target if it is in one of sources; None otherwise."""
        async with self.engine.begin() as conn:
            return await move_campaign(
                conn, campaign_id, sources, target, now, **values
            )

    async def money_of(self, campaign_ids: Sequence[int]) -> dict[int, tuple[int, int]]:
        """Return (spend, reserved) in micros for each campaign."""
        spent = sa.case(
            (messages.c.state.in_(_SPENT_STATES), messages.c.cost_micros), else_=0
        )
        reserved = sa.case(
            (
                messages.c.state.in_(RESERVED_STATES),
                messages.c.estimated_cost_micros,
            ),
            else_=0,
        )
        query = (
            sa.select(
                messages.c.campaign_id,
                sa.func.coalesce(sa.func.sum(spent), 0),
                sa.func.coalesce(sa.func.sum(reserved), 0),
            )
            .where(messages.c.campaign_id.in_(campaign_ids))
            .group_by(messages.c.campaign_id)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        found = {row[0]: (int(row[1]), int(row[2])) for row in rows}
        return {
            campaign_id: found.get(campaign_id, (0, 0)) for campaign_id in campaign_ids
        }

    async def finish_idle_campaigns(self, now: dt.datetime) -> list[int]:
        """Finish running campaigns with no message pending, deferred or sending."""
        waiting = sa.exists().where(
            messages.c.campaign_id == campaigns.c.campaign_id,
            messages.c.state.in_(RESERVED_STATES),
        )
        async with self.engine.begin() as conn:
            result = await conn.execute(
                sa.update(campaigns)
                .where(campaigns.c.status == CampaignStatus.RUNNING, ~waiting)
                .values(
                    status=CampaignStatus.FINISHED, finish_time=now, update_time=now
                )
                .returning(campaigns.c.campaign_id)
            )
            return sorted(result.scalars().all())

    # The global stop

    async def stop_state(self) -> tuple[bool, str]:
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(control))).one()
        return bool(row.stopped), str(row.reason)

    async def stop_all(self, reason: str, now: dt.datetime) -> list[int]:
        """Set the global stop and pause every running campaign; return their ids."""
        async with self.engine.begin() as conn:
            await conn.execute(
                sa.update(control).values(stopped=True, reason=reason, update_time=now)
            )
            result = await conn.execute(
                sa.update(campaigns)
                .where(campaigns.c.status == CampaignStatus.RUNNING)
                .values(
                    status=CampaignStatus.PAUSED,
                    status_reason=f"global stop: {reason}",
                    update_time=now,
                )
                .returning(campaigns.c.campaign_id)
            )
            return sorted(result.scalars().all())

    async def resume_all(self, now: dt.datetime) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                sa.update(control).values(stopped=False, reason="", update_time=now)
            )

    # Alerts

    async def add_alert(
        self, kind: str, message: str, campaign_id: int, now: dt.datetime
    ) -> None:
        async with self.engine.begin() as conn:
            await add_alert(conn, kind, message, campaign_id, now)

    async def list_alerts(self, after: int | None, limit: int) -> Sequence[Row]:
        query = sa.select(alerts).order_by(alerts.c.alert_id.desc())
        if after is not None:
            query = query.where(alerts.c.alert_id < after)
        async with self.engine.connect() as conn:
            return (await conn.execute(query.limit(limit))).all()

    # Inbound messages

    async def add_inbound(self, values: dict[str, Any]) -> bool:
        """Store an inbound message; return False if its provider id was seen."""
        query = (
            pg_insert(inbound_messages)
            .values(**values)
            .on_conflict_do_nothing(index_elements=["provider_id"])
            .returning(inbound_messages.c.inbound_message_id)
        )
        async with self.engine.begin() as conn:
            return (await conn.execute(query)).one_or_none() is not None

    async def list_inbound(self, after: int | None, limit: int) -> Sequence[Row]:
        query = sa.select(inbound_messages).order_by(
            inbound_messages.c.inbound_message_id.desc()
        )
        if after is not None:
            query = query.where(inbound_messages.c.inbound_message_id < after)
        async with self.engine.connect() as conn:
            return (await conn.execute(query.limit(limit))).all()

    # Test messages

    async def add_test_message(self, values: dict[str, Any]) -> Row:
        async with self.engine.begin() as conn:
            result = await conn.execute(
                sa.insert(test_messages).values(**values).returning(test_messages)
            )
            return result.one()

    async def find_test_message(self, provider_message_id: str) -> Row | None:
        query = sa.select(test_messages).where(
            test_messages.c.provider_message_id == provider_message_id
        )
        async with self.engine.connect() as conn:
            return (await conn.execute(query.limit(1))).one_or_none()

    async def move_test_message(
        self,
        provider_message_id: str,
        target: MessageState,
        now: dt.datetime,
        **values: Any,
    ) -> Row | None:
        """Move the SUBMITTED test message with a provider id to target; None
        when no such message is SUBMITTED."""
        async with self.engine.begin() as conn:
            result = await conn.execute(
                sa.update(test_messages)
                .where(
                    test_messages.c.provider_message_id == provider_message_id,
                    test_messages.c.state == MessageState.SUBMITTED,
                )
                .values(state=target, update_time=now, **values)
                .returning(test_messages)
            )
            return result.first()


def running_campaigns() -> sa.Select[tuple[int]]:
    """Return the ids of running campaigns, none while the global stop is set."""
    return sa.select(campaigns.c.campaign_id).where(
        campaigns.c.status == CampaignStatus.RUNNING,
        ~sa.select(control.c.stopped).scalar_subquery(),
    )


async def move_campaign(
    conn: AsyncConnection,
    campaign_id: int,
    sources: Iterable[CampaignStatus],
    target: CampaignStatus,
    now: dt.datetime,
    **values: Any,
) -> Row | None:
    """Compare-and-set a campaign's status inside an open transaction."""
    result = await conn.execute(
        sa.update(campaigns)
        .where(
            campaigns.c.campaign_id == campaign_id,
            campaigns.c.status.in_(list(sources)),
        )
        .values(status=target, update_time=now, **values)
        .returning(campaigns)
    )
    return result.one_or_none()


async def add_alert(
    conn: AsyncConnection, kind: str, message: str, campaign_id: int, now: dt.datetime
) -> None:
    await conn.execute(
        sa.insert(alerts).values(
            kind=kind, message=message, campaign_id=campaign_id, create_time=now
        )
    )
