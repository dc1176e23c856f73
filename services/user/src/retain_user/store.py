"""Queries of the user service, one transaction per method.

Values arrive already encrypted and hashed, so this module never receives a
phone number in plaintext. Each batch goes to PostgreSQL as one statement: a
multi-row INSERT ... ON CONFLICT for up to 1000 customers, and a join against
an unnested id array for up to 10,000 consent checks.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from retain.type.v1 import channel_pb2
from retain_runtime import db
from retain_runtime.errors import NotFound
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from retain_user import consent_rules
from retain_user.tables import consent_events, consent_state, customers, opt_outs

_EMPTY_JSON = sa.cast(sa.literal("{}"), pg.JSONB)


@dataclass(frozen=True)
class OptOutChange:
    """An opt-out (opted_out=True) or opt-in of one number on some channels."""

    phone_hash: bytes
    channels: Sequence[int]
    opted_out: bool
    source: int
    evidence: str
    occur_time: dt.datetime
    recorded_by: str
    record_time: dt.datetime


class UserStore:
    """Customers, the consent ledger and opt-outs in the service's database."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._sessions = db.sessionmaker(engine)

    async def upsert_customers(
        self, rows: Sequence[Mapping[str, Any]]
    ) -> dict[str, tuple[int, bool]]:
        """Insert or update rows by external_id in one statement.

        Returns (customer_id, created) by external id. Empty attributes keep
        the stored ones, and update_time moves only when something changed.
        """
        upsert = _customer_upsert(rows)
        async with self._sessions.begin() as session:
            result = await session.execute(upsert)
            return {row.external_id: (row.customer_id, row.created) for row in result}

    async def get_customer(self, customer_id: int) -> sa.Row[Any] | None:
        async with self._sessions() as session:
            query = sa.select(customers).where(customers.c.customer_id == customer_id)
            return (await session.execute(query)).first()

    async def lookup_customers(self, external_ids: Sequence[str]) -> dict[str, int]:
        query = sa.select(customers.c.external_id, customers.c.customer_id).where(
            customers.c.external_id.in_(external_ids)
        )
        async with self._sessions() as session:
            result = await session.execute(query)
            return {row.external_id: row.customer_id for row in result}

    async def customers_by_phone_hash(self, phone_hash: bytes) -> Sequence[sa.Row[Any]]:
        """Return id, language, vertical and fictitious of the customers with
        a phone hash, in customer id order."""
        query = (
            sa.select(
                customers.c.customer_id,
                customers.c.language,
                customers.c.vertical,
                customers.c.fictitious,
            )
            .where(customers.c.phone_hash == phone_hash)
            .order_by(customers.c.customer_id)
        )
        async with self._sessions() as session:
            return (await session.execute(query)).all()

    async def list_customers(
        self, after: int, limit: int, prefix: str
    ) -> Sequence[sa.Row[Any]]:
        """Return up to limit customers with ids above after, in id order."""
        query = (
            sa.select(customers)
            .where(customers.c.customer_id > after)
            .order_by(customers.c.customer_id)
            .limit(limit)
        )
        if prefix:
            query = query.where(sa.func.starts_with(customers.c.external_id, prefix))
        async with self._sessions() as session:
            return (await session.execute(query)).all()

    async def customer_stats(self) -> tuple[int, int, int]:
        """Return the customer count, the marketing SMS count and opted-out numbers."""
        sms, marketing = channel_pb2.CHANNEL_SMS, channel_pb2.PURPOSE_MARKETING
        marketing_sms = (
            sa.select(sa.func.count())
            .select_from(
                customers.outerjoin(
                    consent_state, consent_rules.state_join(sms, marketing)
                )
            )
            .where(consent_rules.permitted(sms, marketing))
        )
        numbers = sa.func.count(sa.distinct(opt_outs.c.phone_hash))
        opted_out = sa.select(numbers).where(opt_outs.c.opted_out)
        total = sa.select(sa.func.count()).select_from(customers)
        async with self._sessions() as session:
            counts = [
                await session.scalar(query)
                for query in (total, marketing_sms, opted_out)
            ]
        return counts[0] or 0, counts[1] or 0, counts[2] or 0

    async def append_consents(self, rows: Sequence[Mapping[str, Any]]) -> int:
        """Append ledger rows and update consent_state in one transaction.

        Raises NotFound naming the first customer id that does not exist.
        """
        wanted = {row["customer_id"] for row in rows}
        async with self._sessions.begin() as session:
            found = set(
                await session.scalars(
                    sa.select(customers.c.customer_id).where(
                        customers.c.customer_id.in_(wanted)
                    )
                )
            )
            for index, row in enumerate(rows):
                if row["customer_id"] not in found:
                    raise NotFound(
                        f"consents[{index}].customer_id: customer "
                        f"{row['customer_id']} does not exist; upsert it first"
                    )
            await _append_events(session, rows)
        return len(rows)

    async def list_consent_events(
        self, customer_id: int, after: int, limit: int
    ) -> Sequence[sa.Row[Any]] | None:
        """Return a page of one customer's ledger, or None if the customer is unknown."""
        query = (
            sa.select(consent_events)
            .where(consent_events.c.customer_id == customer_id)
            .where(consent_events.c.consent_event_id > after)
            .order_by(consent_events.c.consent_event_id)
            .limit(limit)
        )
        exists = sa.select(customers.c.customer_id).where(
            customers.c.customer_id == customer_id
        )
        async with self._sessions() as session:
            if await session.scalar(exists) is None:
                return None
            return (await session.execute(query)).all()

    async def permitted_customers(
        self, customer_ids: Sequence[int], channel: int, purpose: int
    ) -> Sequence[sa.Row[Any]]:
        """Return id, language and vertical of the customers that pass the
        consent rule, in request order."""
        columns = [customers.c.customer_id, customers.c.language, customers.c.vertical]
        query = _permitted_query(customer_ids, channel, purpose, columns)
        async with self._sessions() as session:
            return (await session.execute(query)).all()

    async def permitted_contacts(
        self, customer_ids: Sequence[int], channel: int, purpose: int
    ) -> Sequence[sa.Row[Any]]:
        """Return the customer rows that pass the consent rule, in request order."""
        query = _permitted_query(customer_ids, channel, purpose, [customers])
        async with self._sessions() as session:
            return (await session.execute(query)).all()

    async def change_opt_out(self, change: OptOutChange) -> tuple[list[int], bool]:
        """Apply an opt-out or opt-in to a number and append the ledger rows.

        Returns the ids of the customers sharing the number and whether every
        channel in the change had already opted out before it.
        """
        async with self._sessions.begin() as session:
            # Serialise changes to one number so that exactly one of two
            # concurrent opt-outs reports that the number had not opted out.
            lock_key = int.from_bytes(change.phone_hash[:8], "big", signed=True)
            await session.execute(sa.select(sa.func.pg_advisory_xact_lock(lock_key)))
            already = await _opted_out_channels(session, change.phone_hash)
            customer_ids = list(
                await session.scalars(
                    sa.select(customers.c.customer_id)
                    .where(customers.c.phone_hash == change.phone_hash)
                    .order_by(customers.c.customer_id)
                )
            )
            await _upsert_opt_outs(session, change)
            if customer_ids:
                await _append_events(session, _opt_out_rows(change, customer_ids))
        return customer_ids, set(change.channels) <= already


# Columns an upsert overwrites with the request's values as they are.
_REPLACED_COLUMNS = (
    "phone_encrypted",
    "phone_hash",
    "first_name_encrypted",
    "personal_digest",
    "language",
    "vertical",
    "fictitious",
)


def _customer_upsert(rows: Sequence[Mapping[str, Any]]) -> Any:
    """Build INSERT ... ON CONFLICT (external_id) DO UPDATE ... RETURNING."""
    insert = pg.insert(customers).values(list(rows))
    new, old = insert.excluded, customers.c
    changed = sa.or_(
        old.personal_digest != new.personal_digest,
        old.language != new.language,
        old.vertical != new.vertical,
        old.fictitious != new.fictitious,
        sa.and_(new.attributes != _EMPTY_JSON, new.attributes != old.attributes),
    )
    return insert.on_conflict_do_update(
        index_elements=[old.external_id],
        set_={
            **{name: new[name] for name in _REPLACED_COLUMNS},
            "attributes": sa.case(
                (new.attributes == _EMPTY_JSON, old.attributes),
                else_=new.attributes,
            ),
            "update_time": sa.case((changed, new.update_time), else_=old.update_time),
        },
    ).returning(
        old.external_id,
        old.customer_id,
        # xmax is 0 only on a row version this statement inserted; the upsert
        # tests check this on PostgreSQL 18.
        sa.literal_column("xmax = 0").label("created"),
    )


def _permitted_query(
    customer_ids: Sequence[int], channel: int, purpose: int, columns: list[Any]
) -> sa.Select[Any]:
    requested = (
        sa.func.unnest(sa.literal(list(customer_ids), pg.ARRAY(sa.BigInteger)))
        .table_valued("customer_id", with_ordinality="position")
        .render_derived(name="requested")
    )
    joined = requested.join(
        customers, customers.c.customer_id == requested.c.customer_id
    ).outerjoin(consent_state, consent_rules.state_join(channel, purpose))
    return (
        sa.select(*columns)
        .select_from(joined)
        .where(consent_rules.permitted(channel, purpose))
        .order_by(requested.c.position)
    )


async def _append_events(
    session: AsyncSession, rows: Sequence[Mapping[str, Any]]
) -> None:
    """Insert ledger rows and move consent_state to the latest, in one statement."""
    events = consent_events.c
    inserted = (
        pg.insert(consent_events)
        .values(list(rows))
        .returning(
            events.consent_event_id,
            events.customer_id,
            events.channel,
            events.purpose,
            events.granted,
            events.occur_time,
        )
        .cte("inserted")
    )
    await session.execute(_state_upsert(inserted).add_cte(inserted))


def _state_upsert(inserted: Any) -> Any:
    """Build the upsert of consent_state from the newest inserted row per key.

    A stored row is replaced only by one with a greater (occur_time,
    consent_event_id), so older rows recorded later never win.
    """
    key = [inserted.c.customer_id, inserted.c.channel, inserted.c.purpose]
    newest = inserted.c.occur_time.desc(), inserted.c.consent_event_id.desc()
    latest = (
        sa.select(
            *key, inserted.c.granted, inserted.c.occur_time, inserted.c.consent_event_id
        )
        .ext(pg.distinct_on(*key))
        .order_by(*key, *newest)
    )
    columns = ["customer_id", "channel", "purpose", "granted", "occur_time"]
    upsert = pg.insert(consent_state).from_select(
        [*columns, "consent_event_id"], latest
    )
    new, old = upsert.excluded, consent_state.c
    return upsert.on_conflict_do_update(
        index_elements=[old.customer_id, old.channel, old.purpose],
        set_={
            "granted": new.granted,
            "occur_time": new.occur_time,
            "consent_event_id": new.consent_event_id,
        },
        where=sa.tuple_(new.occur_time, new.consent_event_id)
        > sa.tuple_(old.occur_time, old.consent_event_id),
    )


async def _opted_out_channels(session: AsyncSession, phone_hash: bytes) -> set[int]:
    query = sa.select(opt_outs.c.channel).where(
        opt_outs.c.phone_hash == phone_hash, opt_outs.c.opted_out
    )
    return set(await session.scalars(query))


async def _upsert_opt_outs(session: AsyncSession, change: OptOutChange) -> None:
    """Store the number's state per channel unless a later change is stored."""
    rows = [
        {
            "phone_hash": change.phone_hash,
            "channel": channel,
            "opted_out": change.opted_out,
            "source": change.source,
            "evidence": change.evidence,
            "occur_time": change.occur_time,
            "update_time": change.record_time,
        }
        for channel in change.channels
    ]
    insert = pg.insert(opt_outs).values(rows)
    new = insert.excluded
    upsert = insert.on_conflict_do_update(
        index_elements=[opt_outs.c.phone_hash, opt_outs.c.channel],
        set_={name: new[name] for name in _OPT_OUT_STATE},
        where=new.occur_time >= opt_outs.c.occur_time,
    )
    await session.execute(upsert)


# Columns of opt_outs that a later change overwrites.
_OPT_OUT_STATE = ("opted_out", "source", "evidence", "occur_time", "update_time")


def _opt_out_rows(
    change: OptOutChange, customer_ids: list[int]
) -> list[dict[str, Any]]:
    return [
        {
            "customer_id": customer_id,
            "channel": channel,
            "purpose": channel_pb2.PURPOSE_MARKETING,
            "granted": not change.opted_out,
            "source": change.source,
            "notice_version": "",
            "evidence": change.evidence,
            "recorded_by": change.recorded_by,
            "occur_time": change.occur_time,
            "record_time": change.record_time,
        }
        for customer_id in customer_ids
        for channel in change.channels
    ]
