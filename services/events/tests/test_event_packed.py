"""Packed ListSequences pages, the events cap per page, and CountSequences."""

from __future__ import annotations

import asyncio
import datetime as dt

import grpc
import numpy as np
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from events_helpers import PURCHASE, TRIP, EventsClient, event, ingest_request, utc
from retain.events.v1 import events_pb2
from retain_events import sequences, store
from retain_events.ingest import EventBatch
from retain_events.server import MIGRATIONS_DIR, Service
from retain_runtime import db
from retain_runtime.timestamps import from_datetime


async def ingest(client: EventsClient, events: list[events_pb2.Event]) -> None:
    await client.IngestEvents(ingest_request(events), timeout=10)


def unpack(packed: events_pb2.PackedSequences) -> dict[int, tuple[list, list, list]]:
    """Return each customer's times, types and amounts from a packed page."""
    times = np.frombuffer(packed.occur_unix_seconds, dtype="<i8").tolist()
    types = np.frombuffer(packed.event_types, dtype="<i2").tolist()
    amounts = np.frombuffer(packed.amounts_micros, dtype="<i8").tolist()
    customers, start = {}, 0
    for customer_id, count in zip(packed.customer_ids, packed.event_counts):
        end = start + count
        customers[customer_id] = (
            times[start:end],
            types[start:end],
            amounts[start:end],
        )
        start = end
    return customers


async def pages(
    client: EventsClient, request: events_pb2.ListSequencesRequest
) -> list[events_pb2.ListSequencesResponse]:
    replies = []
    while True:
        reply = await client.ListSequences(request, timeout=10)
        replies.append(reply)
        if not reply.next_page_token:
            return replies
        request.page_token = reply.next_page_token


async def test_packed_page_matches_messages(client: EventsClient) -> None:
    before_1970 = dt.datetime(1969, 12, 31, 23, 59, 59, 500_000, tzinfo=dt.UTC)
    await ingest(
        client,
        [
            event("a", 4, utc(2025, 1, 2, 12), TRIP, "200"),
            event("b", 4, utc(2025, 1, 1, 12, 0, 0, 750_000), PURCHASE, "50.5"),
            event("c", 9, utc(2025, 1, 3), PURCHASE, "3", "USD"),
            event("d", 9, before_1970, PURCHASE),
        ],
    )

    packed = await client.ListSequences(
        events_pb2.ListSequencesRequest(packed=True), timeout=10
    )
    plain = await client.ListSequences(events_pb2.ListSequencesRequest(), timeout=10)

    assert not packed.sequences
    assert list(packed.packed.customer_ids) == [4, 9]
    assert list(packed.packed.event_counts) == [2, 2]
    assert unpack(packed.packed) == {
        s.customer_id: (
            list(s.occur_unix_seconds),
            list(s.event_types),
            list(s.amounts_micros),
        )
        for s in plain.sequences
    }
    assert unpack(packed.packed)[9][0] == [-1, int(utc(2025, 1, 3).timestamp())]
    assert unpack(packed.packed)[4][0][0] == int(utc(2025, 1, 1, 12).timestamp())


async def test_packed_pages_follow_page_tokens(client: EventsClient) -> None:
    await ingest(client, [event(f"e{c}", c, utc(2025, 1, 1)) for c in (1, 2, 3, 5, 8)])

    replies = await pages(
        client, events_pb2.ListSequencesRequest(page_size=2, packed=True)
    )

    assert [list(r.packed.customer_ids) for r in replies] == [[1, 2], [3, 5], [8]]


@pytest.mark.parametrize("packed", [False, True], ids=["messages", "packed"])
async def test_page_stops_at_event_cap(
    client: EventsClient, monkeypatch: pytest.MonkeyPatch, packed: bool
) -> None:
    monkeypatch.setattr(sequences, "MAX_PAGE_EVENTS", 4)
    counts = {1: 3, 2: 1, 3: 2, 4: 6, 5: 1}
    await ingest(
        client,
        [
            event(f"{c}-{n}", c, utc(2025, 1, 1 + n))
            for c, count in counts.items()
            for n in range(count)
        ],
    )

    replies = await pages(
        client, events_pb2.ListSequencesRequest(page_size=10, packed=packed)
    )

    if packed:
        customers = [list(r.packed.customer_ids) for r in replies]
    else:
        customers = [[s.customer_id for s in r.sequences] for r in replies]
    # Customer 4 alone exceeds the cap, so it gets a page of its own.
    assert customers == [[1, 2], [3], [4], [5]]


async def test_count_sequences_matches_pages(client: EventsClient) -> None:
    end = utc(2025, 2, 1)
    await ingest(
        client,
        [
            event("1a", 1, utc(2025, 1, 1)),
            event("3a", 3, utc(2025, 1, 1)),
            event("3b", 3, utc(2025, 1, 5)),
            event("3-late", 3, end),
            event("6a", 6, utc(2025, 1, 9)),
            event("8-late", 8, end + dt.timedelta(days=1)),
        ],
    )

    reply = await client.CountSequences(
        events_pb2.CountSequencesRequest(
            min_customer_id=2, end_time=from_datetime(end)
        ),
        timeout=10,
    )

    assert reply.customer_count == 2
    assert reply.event_count == 3
    assert reply.first_customer_id == 3
    assert reply.last_customer_id == 6


async def test_count_sequences_of_empty_range_is_zero(client: EventsClient) -> None:
    await ingest(client, [event("a", 1, utc(2025, 1, 1))])

    reply = await client.CountSequences(
        events_pb2.CountSequencesRequest(min_customer_id=5, max_customer_id=9),
        timeout=10,
    )

    assert reply.customer_count == 0
    assert reply.first_customer_id == 0
    assert reply.last_customer_id == 0


async def test_count_sequences_rejects_max_below_min(client: EventsClient) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.CountSequences(
            events_pb2.CountSequencesRequest(min_customer_id=9, max_customer_id=3),
            timeout=10,
        )
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "max_customer_id" in (caught.value.details() or "")


async def test_late_event_lands_in_time_order(client: EventsClient) -> None:
    await ingest(client, [event("jan-5", 7, utc(2025, 1, 5), TRIP, "20")])
    await ingest(client, [event("jan-1", 7, utc(2025, 1, 1), PURCHASE, "10")])

    reply = await client.ListSequences(
        events_pb2.ListSequencesRequest(packed=True), timeout=10
    )

    times, types, amounts = unpack(reply.packed)[7]
    assert times == [int(utc(2025, 1, 1).timestamp()), int(utc(2025, 1, 5).timestamp())]
    assert types == [PURCHASE, TRIP]
    assert amounts == [10_000_000, 20_000_000]


async def test_later_batches_append_in_order(client: EventsClient) -> None:
    await ingest(
        client, [event("b", 7, utc(2025, 1, 2)), event("a", 7, utc(2025, 1, 1))]
    )
    await ingest(client, [event("c", 7, utc(2025, 1, 3), TRIP, "5")])
    # The same instant as the last event: its id orders it, so the row is rebuilt.
    await ingest(client, [event("0", 7, utc(2025, 1, 3), PURCHASE, "6")])
    await ingest(client, [event("d", 7, utc(2025, 1, 4), PURCHASE, "7", "USD")])

    reply = await client.ListSequences(
        events_pb2.ListSequencesRequest(packed=True), timeout=10
    )

    times, types, amounts = unpack(reply.packed)[7]
    days = [1, 2, 3, 3, 4]
    assert times == [int(utc(2025, 1, day).timestamp()) for day in days]
    assert types == [PURCHASE, PURCHASE, PURCHASE, TRIP, PURCHASE]
    assert amounts == [0, 0, 6_000_000, 5_000_000, 0]


async def test_batch_waits_for_same_customer_batch(
    events_service: Service, database: sa.Engine, client: EventsClient
) -> None:
    # An open transaction stores an event of customer 42 and rewrites their
    # packed row as ingest does. A second batch of 42 read before the first
    # commits would write a packed row without the first batch's event.
    second = EventBatch.from_events([event("second", 42, utc(2025, 1, 2))])
    with database.connect() as first:
        first.execute(
            sa.text(
                "INSERT INTO event_ids (event_id, customer_id) VALUES ('first', 42);"
                "INSERT INTO events (customer_id, occur_time, event_id, event_type)"
                " VALUES (42, '2025-01-01 00:00+00', 'first', 1)"
            )
        )
        first.execute(store._LOCK_CUSTOMERS, {"ids": [42]})
        first.execute(store._PACK, {"ids": [42]})
        pending = asyncio.create_task(events_service.store.ingest(second))
        await wait_for_lock_wait(database)
        first.commit()
    await asyncio.wait_for(pending, 10)

    reply = await client.ListSequences(
        events_pb2.ListSequencesRequest(packed=True), timeout=10
    )
    times = unpack(reply.packed)[42][0]
    assert times == [int(utc(2025, 1, 1).timestamp()), int(utc(2025, 1, 2).timestamp())]


async def wait_for_lock_wait(database: sa.Engine) -> None:
    """Return once a session of the test database waits for a lock."""
    query = sa.text(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    for _ in range(200):
        with database.connect() as conn:
            if conn.scalar(query):
                return
        await asyncio.sleep(0.05)
    raise AssertionError("no session waited for a lock within 10 s")


async def test_pages_skip_customers_without_past_events(
    client: EventsClient,
) -> None:
    end = utc(2025, 2, 1)
    early = [2, 9, 10]
    await ingest(
        client,
        [
            *(event(f"late-{c}", c, end + dt.timedelta(days=c)) for c in range(1, 11)),
            *(event(f"early-{c}", c, end - dt.timedelta(days=c)) for c in early),
        ],
    )
    request = events_pb2.ListSequencesRequest(
        packed=True, page_size=2, end_time=from_datetime(end)
    )

    replies = await pages(client, request)

    served = [list(r.packed.customer_ids) for r in replies]
    assert [c for page in served for c in page] == early
    assert [] in served  # a page of customers with later events only is empty
    counts = [n for r in replies for n in r.packed.event_counts]
    assert counts == [1, 1, 1]


async def test_erased_customer_leaves_sequences(client: EventsClient) -> None:
    await ingest(client, [event(f"x{n}", 3, utc(2025, 1, 1 + n)) for n in range(4)])
    await ingest(client, [event("keep", 4, utc(2025, 1, 1))])

    await client.DeleteCustomerEvents(
        events_pb2.DeleteCustomerEventsRequest(customer_id=3), timeout=10
    )

    reply = await client.ListSequences(
        events_pb2.ListSequencesRequest(packed=True), timeout=10
    )
    assert list(reply.packed.customer_ids) == [4]
    assert list(reply.packed.event_counts) == [1]


def test_migration_packs_existing_events(database_url: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["url"] = database_url
    db.ensure_database(database_url)
    command.upgrade(config, "0001")
    engine = sa.create_engine(database_url, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO events (customer_id, occur_time, event_id, event_type,"
                " amount_micros, currency_code) VALUES"
                " (5, '2025-01-03 00:00+00', 'b', 2, 7, 'KES'),"
                " (5, '2025-01-01 00:00+00', 'a', 1, 9, 'USD'),"
                " (6, '2025-01-02 00:00+00', 'c', 1, 0, NULL)"
            )
        )

    command.upgrade(config, "head")

    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT customer_id, event_count, occur_times, event_types,"
                " amounts_micros FROM customer_sequences ORDER BY customer_id"
            )
        ).all()
    engine.dispose()
    page = store.SequencePage.from_rows(rows, utc(2026, 1, 1), limit=10)
    assert page.customer_ids.tolist() == [5, 6]
    assert page.event_counts.tolist() == [2, 1]
    assert page.occur_unix_seconds.tolist() == [
        int(utc(2025, 1, d).timestamp()) for d in (1, 3, 2)
    ]
    assert page.event_types.tolist() == [1, 2, 1]
    assert page.amounts_micros.tolist() == [0, 7, 0]


async def test_concurrent_full_batches_all_stored(connect, database: sa.Engine) -> None:
    # Ten batches of 5,000 new customers at once: each batch's customer locks
    # fit PostgreSQL's shared lock table while the others hold theirs.
    batches = [
        [event(f"b{b}-{n}", 1 + b * 5000 + n, utc(2025, 1, 1)) for n in range(5000)]
        for b in range(10)
    ]

    replies = await asyncio.gather(
        *(
            connect("operator").IngestEvents(ingest_request(batch), timeout=120)
            for batch in batches
        )
    )

    assert [reply.accepted_count for reply in replies] == [5000] * 10
    with database.connect() as conn:
        packed = conn.scalar(sa.text("SELECT sum(event_count) FROM customer_sequences"))
    assert packed == 50_000
