"""Generated customers for the scoring benchmark, loaded with binary COPY.

`generate_events` draws every customer's events as flat numpy arrays, sorted by
customer and time. `copy_events` writes them into the events service's own
tables (`events` and `event_ids`) with `COPY ... FROM STDIN (FORMAT binary)`,
bypassing IngestEvents, because every row of this format has the same width and
numpy can lay out millions of rows at once, and then builds the packed rows
of `customer_sequences` that ingest would have kept. `fixed_weight_predictor` builds the
model that the benchmark scores with.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import psycopg
import torch
from retain_events.store import PACK_ALL
from retain_inference.features import EventTable, FeatureNormalizer, build_features
from retain_inference.model import ChurnModel, ModelConfig
from retain_inference.predictor import ChurnPredictor, PlattCalibration

logger = logging.getLogger("bench.scoring")

DAY_S = 86_400
# PostgreSQL counts timestamptz in microseconds from 2000-01-01 00:00 UTC.
PG_EPOCH_S = 946_684_800
COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00" * 8
COPY_TRAILER = b"\xff\xff"
EVENT_ID_DIGITS = 12
# EventType codes the generator draws, and how often: purchase, trip, payment,
# app open.
EVENT_TYPES = np.array([1, 2, 3, 5], dtype=np.int16)
EVENT_TYPE_WEIGHTS = [0.7, 0.1, 0.1, 0.1]
APP_OPEN = 5
COPY_CHUNK_ROWS = 500_000


@dataclass(frozen=True, eq=False)
class GeneratedEvents:
    """Events of customers 1 to N, sorted by customer and then by time."""

    customer_ids: np.ndarray  # int64 (E,)
    occurred_s: np.ndarray  # int64 (E,), Unix seconds
    event_types: np.ndarray  # int16 (E,)
    amounts_micros: np.ndarray  # int64 (E,), 0 for app opens
    events_per_customer: int

    @property
    def customer_count(self) -> int:
        return self.customer_ids.shape[0] // self.events_per_customer

    def table(self, start: int, stop: int) -> EventTable:
        """Return customers start to stop (0-based rows) as an EventTable."""
        per = self.events_per_customer
        first, last = start * per, stop * per
        return EventTable(
            customer_ids=self.customer_ids[first:last:per],
            offsets=np.arange(0, last - first + 1, per, dtype=np.int64),
            occurred_s=self.occurred_s[first:last],
            event_types=self.event_types[first:last].astype(np.int32),
            amounts_micros=self.amounts_micros[first:last],
        )


def generate_events(
    customers: int, events_per_customer: int, as_of: dt.datetime, seed: int
) -> GeneratedEvents:
    """Draw each customer's events; a third of the customers stopped a while ago.

    Each customer has its own mean gap between events (1 to 14 days), and the last
    event lies 0 to 7 days before as_of, or 30 to 180 days for those who stopped.
    """
    rng = np.random.default_rng(seed)
    shape = (customers, events_per_customer)
    mean_gap_s = rng.uniform(1, 14, customers) * DAY_S
    stopped = rng.random(customers) < 1 / 3
    idle_days = np.where(
        stopped, rng.uniform(30, 180, customers), rng.uniform(0, 7, customers)
    )
    last_s = as_of.timestamp() - idle_days * DAY_S
    gaps_s = rng.exponential(1.0, shape) * mean_gap_s[:, None]
    elapsed_s = np.cumsum(gaps_s, axis=1)
    # The last gap ends at last_s, so times ascend within each customer.
    occurred_s = np.floor(last_s[:, None] - (elapsed_s[:, -1:] - elapsed_s))

    event_types = rng.choice(EVENT_TYPES, size=shape, p=EVENT_TYPE_WEIGHTS)
    amounts_kes = rng.integers(50, 5_000, size=shape)
    amounts_micros = np.where(event_types == APP_OPEN, 0, amounts_kes * 1_000_000)
    return GeneratedEvents(
        customer_ids=np.repeat(np.arange(1, customers + 1, dtype=np.int64), shape[1]),
        occurred_s=occurred_s.astype(np.int64).reshape(-1),
        event_types=event_types.reshape(-1),
        amounts_micros=amounts_micros.astype(np.int64).reshape(-1),
        events_per_customer=events_per_customer,
    )


def _event_ids(events: GeneratedEvents, rows: slice) -> np.ndarray:
    """Return "<customer id><event number>" as fixed-width ASCII, (n, digits)."""
    numbers = events.customer_ids[rows] * 100 + (
        np.arange(rows.start, rows.stop) % events.events_per_customer
    )
    powers = 10 ** np.arange(EVENT_ID_DIGITS - 1, -1, -1, dtype=np.int64)
    return ((numbers[:, None] // powers) % 10 + ord("0")).astype(np.uint8)


def _events_rows(events: GeneratedEvents, rows: slice) -> bytes:
    """Lay out rows of the events table in COPY's binary format."""
    dtype = np.dtype(
        [
            ("fields", ">i2"),
            ("customer_id_len", ">i4"),
            ("customer_id", ">i8"),
            ("occur_time_len", ">i4"),
            ("occur_time", ">i8"),
            ("event_id_len", ">i4"),
            ("event_id", "u1", EVENT_ID_DIGITS),
            ("event_type_len", ">i4"),
            ("event_type", ">i2"),
            ("amount_len", ">i4"),
            ("amount", ">i8"),
            ("currency_len", ">i4"),
            ("currency", "S3"),
            # jsonb's binary form is a version byte, 1, before the JSON text.
            ("attributes_len", ">i4"),
            ("attributes", "S3"),
        ]
    )

    count = rows.stop - rows.start
    out = np.empty(count, dtype=dtype)
    out["fields"] = 7
    out["customer_id_len"], out["customer_id"] = 8, events.customer_ids[rows]
    out["occur_time_len"] = 8
    out["occur_time"] = (events.occurred_s[rows] - PG_EPOCH_S) * 1_000_000
    out["event_id_len"], out["event_id"] = EVENT_ID_DIGITS, _event_ids(events, rows)
    out["event_type_len"], out["event_type"] = 2, events.event_types[rows]
    out["amount_len"], out["amount"] = 8, events.amounts_micros[rows]
    out["currency_len"], out["currency"] = 3, b"KES"
    out["attributes_len"], out["attributes"] = 3, b"\x01{}"
    return out.tobytes()


def _event_id_rows(events: GeneratedEvents, rows: slice, ingest_us: int) -> bytes:
    """Lay out rows of the event_ids table in COPY's binary format."""
    dtype = np.dtype(
        [
            ("fields", ">i2"),
            ("event_id_len", ">i4"),
            ("event_id", "u1", EVENT_ID_DIGITS),
            ("customer_id_len", ">i4"),
            ("customer_id", ">i8"),
            ("ingest_time_len", ">i4"),
            ("ingest_time", ">i8"),
        ]
    )
    out = np.empty(rows.stop - rows.start, dtype=dtype)
    out["fields"] = 3
    out["event_id_len"], out["event_id"] = EVENT_ID_DIGITS, _event_ids(events, rows)
    out["customer_id_len"], out["customer_id"] = 8, events.customer_ids[rows]
    out["ingest_time_len"], out["ingest_time"] = 8, ingest_us
    return out.tobytes()


def copy_events(conninfo: str, events: GeneratedEvents) -> None:
    """Load the events into an empty, migrated events database, then analyse it."""
    chunks = [
        slice(start, min(start + COPY_CHUNK_ROWS, events.customer_ids.shape[0]))
        for start in range(0, events.customer_ids.shape[0], COPY_CHUNK_ROWS)
    ]
    ingest_us = int((dt.datetime.now(dt.UTC).timestamp() - PG_EPOCH_S) * 1_000_000)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        _copy(
            conn,
            "event_ids (event_id, customer_id, ingest_time)",
            (_event_id_rows(events, rows, ingest_us) for rows in chunks),
        )
        _copy(
            conn,
            "events (customer_id, occur_time, event_id, event_type, amount_micros,"
            " currency_code, attributes)",
            (_events_rows(events, rows) for rows in chunks),
        )
        # Index-only scans of events need the visibility map that VACUUM sets.
        # A plain VACUUM right after the load left about a quarter of the pages
        # unmarked in a trial, and FREEZE marks them all.
        conn.execute("VACUUM (FREEZE, ANALYZE) events")
        conn.execute("VACUUM (FREEZE, ANALYZE) event_ids")
        # Ingest keeps each customer's packed row current. A COPY bypasses it,
        # so the rows are built once from the loaded events.
        started = time.perf_counter()
        conn.execute(PACK_ALL)
        conn.execute("VACUUM (FREEZE, ANALYZE) customer_sequences")
        logger.info("Packed sequences built in %.1f s", time.perf_counter() - started)


def _copy(conn: psycopg.Connection, table: str, chunks: Iterator[bytes]) -> None:
    with conn.cursor().copy(f"COPY {table} FROM STDIN (FORMAT binary)") as copy:
        copy.write(COPY_HEADER)
        for chunk in chunks:
            copy.write(chunk)
        copy.write(COPY_TRAILER)


def fixed_weight_predictor(
    events: GeneratedEvents, as_of: dt.datetime, seed: int
) -> ChurnPredictor:
    """Build an untrained ChurnPredictor with seeded weights.

    Its feature statistics come from the first 10,000 customers, as training would
    fit them, so the model gets standardised inputs. Scoring costs the same as
    with trained weights, because the shapes are the same.
    """
    torch.manual_seed(seed)
    config = ModelConfig()
    model = ChurnModel(config).eval()
    sample = build_features(
        events.table(0, min(10_000, events.customer_count)),
        as_of,
        max_events=config.max_events,
        num_event_types=config.num_event_types,
    )
    return ChurnPredictor(model, FeatureNormalizer.fit(sample), PlattCalibration())


def libpq_conninfo(sqlalchemy_url: str) -> str:
    """Turn a postgresql+psycopg:// URL into one that psycopg accepts."""
    return sqlalchemy_url.replace("postgresql+psycopg://", "postgresql://", 1)
