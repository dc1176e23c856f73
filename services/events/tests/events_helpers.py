"""Builders of events and requests for the events service tests."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from retain.events.v1 import events_pb2, events_pb2_grpc
from retain_runtime import money
from retain_runtime.timestamps import from_datetime

# The service clock's now in these tests.
NOW = dt.datetime(2025, 3, 1, 9, 0, tzinfo=dt.UTC)

EventsClient = events_pb2_grpc.EventsServiceStub

PURCHASE = events_pb2.EVENT_TYPE_PURCHASE
TRIP = events_pb2.EVENT_TYPE_TRIP


def utc(*parts: int) -> dt.datetime:
    return dt.datetime(*parts, tzinfo=dt.UTC)  # type: ignore[misc]


def event(
    event_id: str,
    customer_id: int,
    when: dt.datetime,
    event_type: int = PURCHASE,
    amount_kes: str | None = None,
    currency: str = "KES",
) -> events_pb2.Event:
    """Build an event; amount_kes is a decimal amount such as "150.50"."""
    built = events_pb2.Event(
        event_id=event_id,
        customer_id=customer_id,
        type=event_type,  # type: ignore[arg-type]
        occur_time=from_datetime(when),
    )
    if amount_kes is not None:
        built.amount.CopyFrom(money.kes(money.to_micros(amount_kes)))
        built.amount.currency_code = currency
    return built


def ingest_request(events: list[events_pb2.Event]) -> events_pb2.IngestEventsRequest:
    return events_pb2.IngestEventsRequest(events=events)


def count_rows(engine: sa.Engine, table: str) -> int:
    with engine.connect() as conn:
        return int(conn.scalar(sa.text(f"SELECT count(*) FROM {table}")) or 0)
