"""IngestEvents and StreamEvents: idempotency, validation and storage."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import grpc
import pytest
import sqlalchemy as sa
from events_helpers import (
    PURCHASE,
    TRIP,
    EventsClient,
    count_rows,
    event,
    ingest_request,
    utc,
)
from retain.events.v1 import events_pb2
from retain_runtime.timestamps import from_datetime, parse_iso


def batch(
    count: int, prefix: str = "e", customer_id: int = 7
) -> list[events_pb2.Event]:
    return [
        event(f"{prefix}{n}", customer_id, utc(2025, 1, 1 + n % 28, 10))
        for n in range(count)
    ]


async def test_same_batch_twice_is_all_duplicates(
    client: EventsClient, database: sa.Engine
) -> None:
    events = batch(50)

    first = await client.IngestEvents(ingest_request(events), timeout=10)
    second = await client.IngestEvents(ingest_request(events), timeout=10)

    assert (first.accepted_count, first.duplicate_count) == (50, 0)
    assert (second.accepted_count, second.duplicate_count) == (0, 50)
    assert count_rows(database, "events") == 50
    assert count_rows(database, "event_ids") == 50


async def test_database_rejects_duplicate_event_id(
    client: EventsClient, database: sa.Engine
) -> None:
    await client.IngestEvents(ingest_request(batch(1)), timeout=10)

    insert = sa.text("INSERT INTO event_ids (event_id, customer_id) VALUES ('e0', 99)")
    with pytest.raises(sa.exc.IntegrityError) as caught, database.begin() as conn:
        conn.execute(insert)

    assert "event_ids_pkey" in str(caught.value)


async def test_repeated_id_in_batch_stored_once(
    client: EventsClient, database: sa.Engine
) -> None:
    first = event("same", 7, utc(2025, 1, 1, 10), amount_kes="10")
    repeat = event("same", 7, utc(2025, 1, 2, 10), amount_kes="99")

    reply = await client.IngestEvents(ingest_request([first, repeat]), timeout=10)

    assert (reply.accepted_count, reply.duplicate_count) == (1, 1)
    with database.connect() as conn:
        stored = conn.execute(sa.text("SELECT amount_micros FROM events")).all()
    assert stored == [(10_000_000,)]


async def test_overlapping_concurrent_batches_count_once(
    client: EventsClient, database: sa.Engine
) -> None:
    ids = [f"id-{n}" for n in range(400)]
    shuffler = random.Random(7)
    requests = []
    for start in range(0, 400, 50):
        # Each batch overlaps the next by 150 ids, in its own random order.
        chosen = ids[start : start + 200]
        shuffler.shuffle(chosen)
        requests.append(
            ingest_request([event(i, 3, utc(2025, 2, 1, 8)) for i in chosen])
        )

    replies = await asyncio.gather(
        *(client.IngestEvents(request, timeout=30) for request in requests)
    )

    sent = sum(len(request.events) for request in requests)
    assert sum(reply.accepted_count for reply in replies) == 400
    assert sum(reply.duplicate_count for reply in replies) == sent - 400
    assert count_rows(database, "events") == 400
    with database.connect() as conn:
        packed = conn.scalar(
            sa.text("SELECT event_count FROM customer_sequences WHERE customer_id = 3")
        )
    assert packed == 400


async def test_offset_and_utc_forms_are_one_instant(
    client: EventsClient, database: sa.Engine
) -> None:
    nairobi = parse_iso("2025-01-10T11:30:00+03:00", "occur_time")
    zulu = parse_iso("2025-01-10T08:30:00Z", "occur_time")
    events = [event("nairobi", 5, nairobi), event("zulu", 5, zulu)]

    await client.IngestEvents(ingest_request(events), timeout=10)

    with database.connect() as conn:
        stored = (
            conn.execute(sa.text("SELECT DISTINCT occur_time FROM events"))
            .scalars()
            .all()
        )
    assert stored == [utc(2025, 1, 10, 8, 30)]


INVALID_EVENTS = {
    "missing occur_time": (
        lambda e: e.ClearField("occur_time"),
        "events[3].occur_time: is required",
    ),
    "empty event_id": (
        lambda e: setattr(e, "event_id", ""),
        "events[3].event_id: has 0 characters",
    ),
    "long event_id": (
        lambda e: setattr(e, "event_id", "x" * 129),
        "events[3].event_id: has 129 characters",
    ),
    "NUL in event_id": (
        lambda e: setattr(e, "event_id", "a\x00b"),
        "events[3].event_id: contains a NUL character",
    ),
    "customer_id zero": (
        lambda e: setattr(e, "customer_id", 0),
        "events[3].customer_id: 0 must be positive",
    ),
    "unspecified type": (
        lambda e: setattr(e, "type", events_pb2.EVENT_TYPE_UNSPECIFIED),
        "events[3].type: 0 is not a known EventType",
    ),
    "unknown type": (
        lambda e: setattr(e, "type", 99),
        "events[3].type: 99 is not a known EventType",
    ),
    "lowercase currency": (
        lambda e: setattr(e.amount, "currency_code", "kes"),
        'events[3].amount.currency_code: "kes" is not a 3-letter',
    ),
    "missing currency": (
        lambda e: setattr(e.amount, "currency_code", ""),
        'events[3].amount.currency_code: "" is not a 3-letter',
    ),
    "negative amount": (
        lambda e: setattr(e.amount, "amount_micros", -1),
        "events[3].amount.amount_micros: -1 must not be negative",
    ),
    "year 1900": (
        lambda e: setattr(e.occur_time, "seconds", -2_203_891_200),
        "events[3].occur_time: 1900-03-01T00:00:00+00:00 is outside 1950 to 2099",
    ),
    "year 2999": (
        lambda e: setattr(e.occur_time, "seconds", 32_477_241_600),
        "events[3].occur_time: 2999-03-01T00:00:00+00:00 is outside 1950 to 2099",
    ),
    "time past 9999": (
        lambda e: setattr(e.occur_time, "seconds", 253_402_300_800),
        "events[3].occur_time: seconds=253402300800",
    ),
}


@pytest.mark.parametrize(
    ("spoil", "message"), INVALID_EVENTS.values(), ids=INVALID_EVENTS.keys()
)
async def test_invalid_event_rejects_whole_batch(
    client: EventsClient, database: sa.Engine, spoil, message: str
) -> None:
    events = [event(f"ok{n}", 2, utc(2025, 1, 5, 9), amount_kes="20") for n in range(6)]
    spoil(events[3])

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.IngestEvents(ingest_request(events), timeout=10)

    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert (caught.value.details() or "").startswith(message)
    assert count_rows(database, "events") == 0
    assert count_rows(database, "event_ids") == 0


@pytest.mark.parametrize("size", [0, 5001], ids=["empty", "over 5000"])
async def test_batch_size_out_of_range_is_rejected(
    client: EventsClient, size: int
) -> None:
    events = batch(size)

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.IngestEvents(ingest_request(events), timeout=30)

    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert f"events: has {size} events" in (caught.value.details() or "")


async def test_full_batch_of_5000_is_stored(
    client: EventsClient, database: sa.Engine
) -> None:
    events = [
        event(f"big{n}", 1 + n % 100, utc(2025, 1, 1, n % 24), TRIP, "1.5")
        for n in range(5000)
    ]

    reply = await client.IngestEvents(ingest_request(events), timeout=30)

    assert reply.accepted_count == 5000
    assert count_rows(database, "events") == 5000


async def test_amount_attributes_and_type_are_stored(
    client: EventsClient, database: sa.Engine
) -> None:
    paid = event("paid", 4, utc(2025, 1, 3, 6), TRIP, "150.25", currency="USD")
    paid.attributes["route"] = "Thika Road"
    free = event("free", 4, utc(2025, 1, 4, 6), PURCHASE)
    await client.IngestEvents(ingest_request([paid, free]), timeout=10)

    with database.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT event_id, event_type, amount_micros, currency_code,"
                " attributes FROM events ORDER BY occur_time"
            )
        ).all()

    assert rows[0] == ("paid", TRIP, 150_250_000, "USD", {"route": "Thika Road"})
    assert rows[1] == ("free", PURCHASE, 0, None, {})


async def stream_of(
    *batches: list[events_pb2.Event],
) -> AsyncIterator[events_pb2.StreamEventsRequest]:
    for events in batches:
        yield events_pb2.StreamEventsRequest(events=events)


async def test_stream_returns_totals_of_all_batches(
    client: EventsClient, database: sa.Engine
) -> None:
    first = batch(30, "a")
    second = batch(20, "b") + first[:5]

    reply = await client.StreamEvents(stream_of(first, second, first), timeout=10)

    assert reply.accepted_count == 50
    assert reply.duplicate_count == 35
    assert count_rows(database, "events") == 50


async def test_stream_invalid_batch_keeps_earlier_batches(
    client: EventsClient, database: sa.Engine
) -> None:
    bad = batch(3, "c")
    bad[1].ClearField("occur_time")

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.StreamEvents(stream_of(batch(10, "a"), bad, batch(5, "d")))

    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert (caught.value.details() or "").startswith("events[1].occur_time")
    with database.connect() as conn:
        stored = conn.execute(sa.text("SELECT event_id FROM events")).scalars().all()
    assert sorted(stored) == sorted(f"a{n}" for n in range(10))


async def test_nanoseconds_truncated_to_microseconds(
    client: EventsClient, database: sa.Engine
) -> None:
    precise = event("precise", 9, utc(2025, 1, 1))
    precise.occur_time.CopyFrom(from_datetime(utc(2025, 1, 1)))
    precise.occur_time.nanos = 123_456_789

    await client.IngestEvents(ingest_request([precise]), timeout=10)

    with database.connect() as conn:
        stored = conn.scalar(sa.text("SELECT occur_time FROM events"))
    assert stored == utc(2025, 1, 1, 0, 0, 0, 123_456)
