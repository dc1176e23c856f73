"""Persistence of events in PostgreSQL, behind EventStore.

Three tables (see migrations/versions/):

- ``event_ids`` contains every stored event id with its customer. Its primary key
  is the idempotency constraint: PostgreSQL itself rejects a second row with
  the same id, whatever the application does.
- ``events`` contains the events, keyed by (customer_id, occur_time, event_id).
- ``customer_sequences`` contains each customer's events once more, packed in
  one row: the form ListSequences returns. Ingest appends to the row of every
  customer it adds events to, or rebuilds it when an event comes before the
  row's last one, in the same transaction. A scoring run then reads one row
  per customer instead of one per event.

The events table is not partitioned yet. Keeping id uniqueness in its own
table lets it become partitioned by month later without losing the
idempotency guarantee, because a unique constraint on a partitioned table must
contain the partition key.

Times are timestamptz in UTC. Amounts are integer micros with their currency;
sequences and activity sums count KES amounts only.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import psycopg
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncEngine

from retain_events.ingest import EventBatch, IngestCounts

log = logging.getLogger(__name__)

# 2000-01-01 00:00 UTC, PostgreSQL's epoch for timestamps, in Unix seconds.
PG_EPOCH_UNIX_SECONDS = 946_684_800
PG_EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)

metadata = sa.MetaData()

event_ids = sa.Table(
    "event_ids",
    metadata,
    sa.Column("event_id", sa.Text(collation="C"), primary_key=True),
    sa.Column("customer_id", sa.BigInteger, nullable=False, index=True),
    sa.Column("ingest_time", sa.DateTime(timezone=True), nullable=False),
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("customer_id", sa.BigInteger, primary_key=True),
    sa.Column("occur_time", sa.DateTime(timezone=True), primary_key=True),
    sa.Column("event_id", sa.Text(collation="C"), primary_key=True),
    sa.Column("event_type", sa.SmallInteger, nullable=False),
    sa.Column("amount_micros", sa.BigInteger, nullable=False),
    sa.Column("currency_code", sa.Text),
    sa.Column("attributes", postgresql.JSONB, nullable=False),
)

customer_sequences = sa.Table(
    "customer_sequences",
    metadata,
    sa.Column("customer_id", sa.BigInteger, primary_key=True),
    sa.Column("event_count", sa.Integer, nullable=False),
    sa.Column("occur_times", postgresql.BYTEA, nullable=False),
    sa.Column("event_types", postgresql.BYTEA, nullable=False),
    sa.Column("amounts_micros", postgresql.BYTEA, nullable=False),
    sa.Column("last_occur_time", sa.DateTime(timezone=True), nullable=False),
)

# The columns of customers' packed rows, from a relation of their events with
# the columns customer_id, occur_time, event_id, event_type and kes_micros.
# Each byte string concatenates PostgreSQL's binary send forms, in primary key
# order: timestamptz_send gives microseconds since 2000-01-01 UTC as a
# big-endian int64.
_PACKED = """
    customer_id,
    count(*) AS event_count,
    string_agg(timestamptz_send(occur_time), '' ORDER BY occur_time, event_id)
        AS occur_times,
    string_agg(int2send(event_type), '' ORDER BY occur_time, event_id)
        AS event_types,
    string_agg(int8send(kes_micros), '' ORDER BY occur_time, event_id)
        AS amounts_micros,
    max(occur_time) AS last_occur_time
"""

# Amounts in a currency other than KES count as 0 in sequences.
_KES_MICROS = "CASE WHEN currency_code = 'KES' THEN amount_micros ELSE 0 END"

# The events table as the relation that _PACKED reads.
_KES_EVENTS = f"""
SELECT customer_id, occur_time, event_id, event_type, {_KES_MICROS} AS kes_micros
FROM events
"""

# One statement stores a whole batch. The event_ids insert claims the ids in
# id order, so concurrent batches lock shared ids in the same order and cannot
# deadlock. Only the ids it claimed reach the events table. A customer's
# stored events are appended to their packed row when all of them come after
# its last event. The statement returns each customer with events stored, and
# appended false for those whose rows the caller must rebuild.
_INGEST = sa.text(f"""
WITH incoming AS (
    SELECT * FROM unnest(
        CAST(:event_ids AS text[]),
        CAST(:customer_ids AS bigint[]),
        CAST(:event_types AS smallint[]),
        CAST(:occur_times AS timestamptz[]),
        CAST(:amounts_micros AS bigint[]),
        CAST(:currency_codes AS text[]),
        CAST(:attributes_json AS jsonb[])
    ) AS t(event_id, customer_id, event_type, occur_time, amount_micros,
           currency_code, attributes)
),
claimed AS (
    INSERT INTO event_ids (event_id, customer_id)
    SELECT event_id, customer_id FROM incoming ORDER BY event_id COLLATE "C"
    ON CONFLICT (event_id) DO NOTHING
    RETURNING event_id
),
stored AS (
    INSERT INTO events (customer_id, occur_time, event_id, event_type,
                        amount_micros, currency_code, attributes)
    SELECT i.customer_id, i.occur_time, i.event_id, i.event_type,
           i.amount_micros, i.currency_code, i.attributes
    FROM incoming AS i JOIN claimed AS c ON c.event_id = i.event_id
    RETURNING customer_id, occur_time, event_id, event_type,
              {_KES_MICROS} AS kes_micros
),
added AS (
    SELECT {_PACKED}, min(occur_time) AS first_occur_time
    FROM stored
    GROUP BY customer_id
),
appended AS (
    UPDATE customer_sequences AS s
    SET event_count = s.event_count + a.event_count,
        occur_times = s.occur_times || a.occur_times,
        event_types = s.event_types || a.event_types,
        amounts_micros = s.amounts_micros || a.amounts_micros,
        last_occur_time = a.last_occur_time
    FROM added AS a
    WHERE s.customer_id = a.customer_id
      AND a.first_occur_time > s.last_occur_time
    RETURNING s.customer_id
)
SELECT customer_id, event_count,
       customer_id IN (SELECT customer_id FROM appended) AS appended
FROM added
""")

# Ingest and erasure take the advisory locks of their customers before they
# write. A packed row is then rewritten by one transaction at a time, and a
# rebuild reads the events of every transaction that held the lock before.
# Every advisory lock held takes a slot of PostgreSQL's shared lock table
# (about max_locks_per_transaction times max_connections slots), and one lock
# per customer filled it with a few concurrent batches of 5,000 customers. So
# customers share SEQUENCE_LOCKS locks by id, taken in key order so that two
# transactions cannot deadlock on them. The first key 1 marks these locks,
# and the events database takes no other advisory lock.
SEQUENCE_LOCKS = 64
_LOCK_CUSTOMERS = sa.text(
    "SELECT pg_advisory_xact_lock(1, k) FROM ("
    " SELECT DISTINCT CAST(c % :locks AS integer) AS k"
    " FROM unnest(CAST(:ids AS bigint[])) AS c ORDER BY k"
    ") AS ordered"
).bindparams(locks=SEQUENCE_LOCKS)

_PACK_COLUMNS = (
    "customer_id, event_count, occur_times, event_types, amounts_micros,"
    " last_occur_time"
)

# The packed rows of the given customers, rebuilt from all of their events.
_PACK = sa.text(f"""
INSERT INTO customer_sequences ({_PACK_COLUMNS})
SELECT {_PACKED}
FROM ({_KES_EVENTS} WHERE customer_id = ANY(CAST(:ids AS bigint[]))) AS e
GROUP BY customer_id
ON CONFLICT (customer_id) DO UPDATE
SET event_count = excluded.event_count,
    occur_times = excluded.occur_times,
    event_types = excluded.event_types,
    amounts_micros = excluded.amounts_micros,
    last_occur_time = excluded.last_occur_time
""")

# Every packed row from the events table, for events written by other means
# than ingest, such as a bulk COPY into an empty database.
PACK_ALL = f"""
INSERT INTO customer_sequences ({_PACK_COLUMNS})
SELECT {_PACKED}
FROM ({_KES_EVENTS}) AS e
GROUP BY customer_id
"""

# The query runs on psycopg directly, with its placeholders, because results in
# binary format skip the hex text form of bytea at both ends. It runs on a
# blocking connection in a worker thread: libpq then reads a page of several
# MiB in C, where the asyncio driver wakes the event loop for every chunk.
_SEQUENCES = """
SELECT customer_id, event_count, occur_times, event_types, amounts_micros
FROM customer_sequences
WHERE customer_id >= %(min_customer_id)s
  AND customer_id <= %(max_customer_id)s
ORDER BY customer_id
LIMIT %(limit)s
"""

# Parallel workers would make the count finish sooner but take CPU from the
# scoring run that asked for it, so the count runs in one backend. Without hash
# aggregation the planner reads the primary key index in order and counts each
# customer as it passes. On a table of 10 million events that took about 60% of
# the time of the sequential scan and hash aggregate that it picks otherwise.
_COUNT_SEQUENCES = sa.text("""
SELECT count(*), coalesce(sum(event_count), 0),
       coalesce(min(customer_id), 0), coalesce(max(customer_id), 0)
FROM (
    SELECT customer_id, count(*) AS event_count
    FROM events
    WHERE customer_id >= :min_customer_id
      AND customer_id <= :max_customer_id
      AND occur_time < :end_time
    GROUP BY customer_id
) AS customers
""")

_ACTIVITY = sa.text("""
SELECT requested.customer_id, activity.event_count, activity.amount_micros
FROM unnest(CAST(:customer_ids AS bigint[])) WITH ORDINALITY
     AS requested(customer_id, position)
CROSS JOIN LATERAL (
    SELECT count(*) AS event_count,
           coalesce(sum(amount_micros) FILTER (WHERE currency_code = 'KES'), 0)
               ::bigint AS amount_micros
    FROM events
    WHERE events.customer_id = requested.customer_id
      AND occur_time >= :start_time AND occur_time < :end_time
) AS activity
ORDER BY requested.position
""")

_DAILY_COUNTS = sa.text("""
SELECT (occur_time AT TIME ZONE :zone)::date AS day,
       count(*) AS event_count,
       count(DISTINCT customer_id) AS customer_count
FROM events
WHERE occur_time >= :start_time AND occur_time < :end_time
GROUP BY day
""")


@dataclass(frozen=True, eq=False)
class SequencePage:
    """Customers' events as flat columns, each customer's events contiguous.

    customer_ids[i] has event_counts[i] events, in time order. A customer
    whose events all fall at or after the page's end time is left out, so a
    read can return fewer customers than it read rows, even none.
    """

    customer_ids: np.ndarray  # int64 (B,), ascending
    event_counts: np.ndarray  # int64 (B,)
    occur_unix_seconds: np.ndarray  # int64 (E,), rounded down
    event_types: np.ndarray  # int16 (E,)
    amounts_micros: np.ndarray  # int64 (E,), 0 unless the amount is in KES
    # The last customer id read when the read stopped at its row limit, so
    # more customers may follow it; None when the read reached the range's end.
    read_through: int | None = None

    @classmethod
    def from_rows(
        cls, rows: Sequence[Sequence[Any]], end_time: dt.datetime, limit: int
    ) -> SequencePage:
        """Build a page from _SEQUENCES rows, without events at or after end_time."""
        customer_ids = np.array([row[0] for row in rows], dtype=np.int64)
        counts = np.array([row[1] for row in rows], dtype=np.int64)
        micros = np.frombuffer(b"".join(row[2] for row in rows), dtype=">i8")
        types = np.frombuffer(b"".join(row[3] for row in rows), dtype=">i2")
        amounts = np.frombuffer(b"".join(row[4] for row in rows), dtype=">i8")
        # Each customer's events ascend in time, so the kept events of a
        # customer are the first ones, and the mask keeps the layout.
        keep = micros < _pg_micros(end_time)
        if not keep.all():
            starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
            counts = np.add.reduceat(keep.astype(np.int64), starts)
            micros, types, amounts = micros[keep], types[keep], amounts[keep]
            present = counts > 0
            customer_ids, counts = customer_ids[present], counts[present]
        return cls(
            customer_ids=customer_ids,
            event_counts=counts,
            # Floor division rounds down before 1970 too, like floor().
            occur_unix_seconds=micros // 1_000_000 + PG_EPOCH_UNIX_SECONDS,
            event_types=types.astype(np.int16),
            amounts_micros=amounts.astype(np.int64),
            read_through=int(rows[-1][0]) if len(rows) == limit else None,
        )

    def __len__(self) -> int:
        return int(self.customer_ids.shape[0])


def _pg_micros(moment: dt.datetime) -> int:
    """Return moment as microseconds since 2000-01-01 UTC, exactly."""
    return (moment - PG_EPOCH) // dt.timedelta(microseconds=1)


@dataclass(frozen=True)
class SequenceCount:
    customer_count: int
    event_count: int
    first_customer_id: int
    last_customer_id: int


@dataclass(frozen=True)
class ActivityRow:
    customer_id: int
    event_count: int
    amount_micros: int


@dataclass(frozen=True)
class DailyCount:
    day: dt.date
    event_count: int
    customer_count: int


class EventStore:
    """Queries and writes of the events database."""

    def __init__(self, engine: AsyncEngine, reader: Engine | None = None) -> None:
        self._engine = engine
        # A blocking engine on the same database for the large sequence reads.
        self._reader = reader or sa.create_engine(
            engine.url, pool_size=2, pool_pre_ping=True
        )

    def close(self) -> None:
        """Close the connections of the blocking engine."""
        self._reader.dispose()

    async def ingest(self, batch: EventBatch) -> IngestCounts:
        """Store a batch in one transaction; ids stored before are duplicates."""
        params = {
            "event_ids": batch.event_ids,
            "customer_ids": batch.customer_ids,
            "event_types": batch.event_types,
            "occur_times": batch.occur_times,
            "amounts_micros": batch.amounts_micros,
            "currency_codes": batch.currency_codes,
            "attributes_json": batch.attributes_json,
        }
        async with self._engine.begin() as conn:
            # The lock statement drops repeated ids and sorts the lock keys.
            await conn.execute(_LOCK_CUSTOMERS, {"ids": batch.customer_ids})
            added = (await conn.execute(_INGEST, params)).all()
            rebuilt = [row.customer_id for row in added if not row.appended]
            if rebuilt:
                await conn.execute(_PACK, {"ids": rebuilt})
        accepted = sum(row.event_count for row in added)
        return IngestCounts(accepted, len(batch) - accepted + batch.repeated_ids)

    async def sequences(
        self,
        min_customer_id: int,
        max_customer_id: int,
        end_time: dt.datetime,
        limit: int,
    ) -> SequencePage:
        """Read up to limit customers of the id range; keep events before end_time.

        The page leaves out customers without such events. Its read_through is
        set when the read stopped at the limit.
        """
        params = {
            "min_customer_id": min_customer_id,
            "max_customer_id": max_customer_id,
            "end_time": end_time,
            "limit": limit,
        }
        return await asyncio.to_thread(self._read_sequences, params)

    def _read_sequences(self, params: dict[str, Any]) -> SequencePage:
        with self._reader.connect() as conn:
            driver = cast("psycopg.Connection[Any]", conn.connection.driver_connection)
            with driver.cursor(binary=True) as cursor:
                cursor.execute(_SEQUENCES, params)
                rows = cursor.fetchall()
        return SequencePage.from_rows(rows, params["end_time"], params["limit"])

    async def count_sequences(
        self, min_customer_id: int, max_customer_id: int, end_time: dt.datetime
    ) -> SequenceCount:
        """Count the customers in the id range with events before end_time."""
        params = {
            "min_customer_id": min_customer_id,
            "max_customer_id": max_customer_id,
            "end_time": end_time,
        }
        async with self._engine.begin() as conn:
            await conn.execute(sa.text("SET LOCAL max_parallel_workers_per_gather = 0"))
            await conn.execute(sa.text("SET LOCAL enable_hashagg = off"))
            row = (await conn.execute(_COUNT_SEQUENCES, params)).one()
        return SequenceCount(*(int(value) for value in row))

    async def activity(
        self, customer_ids: list[int], start_time: dt.datetime, end_time: dt.datetime
    ) -> list[ActivityRow]:
        """Return one row per requested id, in request order, zeros for no events."""
        params = {
            "customer_ids": customer_ids,
            "start_time": start_time,
            "end_time": end_time,
        }
        async with self._engine.connect() as conn:
            result = await conn.execute(_ACTIVITY, params)
            return [ActivityRow(*row) for row in result]

    async def daily_counts(
        self, start_time: dt.datetime, end_time: dt.datetime, zone: str
    ) -> list[DailyCount]:
        """Return event and customer counts per calendar day of zone, days with events only."""
        params = {"start_time": start_time, "end_time": end_time, "zone": zone}
        async with self._engine.connect() as conn:
            result = await conn.execute(_DAILY_COUNTS, params)
            return [DailyCount(*row) for row in result]

    async def totals(self) -> tuple[int, int]:
        """Return the number of stored events and of customers with any event."""
        # TODO: count(DISTINCT) reads every row; keep running totals in a table
        # once the dashboard polls this against tens of millions of events.
        query = sa.select(
            sa.func.count(), sa.func.count(sa.distinct(events.c.customer_id))
        )
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).one()
        return int(row[0]), int(row[1])

    async def delete_customer(self, customer_id: int) -> int:
        """Delete a customer's events and their ids; return the events deleted."""
        async with self._engine.begin() as conn:
            await conn.execute(_LOCK_CUSTOMERS, {"ids": [customer_id]})
            deleted = await conn.execute(
                sa.delete(events).where(events.c.customer_id == customer_id)
            )
            await conn.execute(
                sa.delete(event_ids).where(event_ids.c.customer_id == customer_id)
            )
            await conn.execute(
                sa.delete(customer_sequences).where(
                    customer_sequences.c.customer_id == customer_id
                )
            )
        return deleted.rowcount
