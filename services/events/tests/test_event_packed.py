"""Packed ListSequences pages, the events cap per page, and CountSequences."""

from __future__ import annotations

import datetime as dt

import grpc
import numpy as np
import pytest
from events_helpers import PURCHASE, TRIP, EventsClient, event, ingest_request, utc
from retain.events.v1 import events_pb2
from retain_events import sequences
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
        customers[customer_id] = (times[start:end], types[start:end], amounts[start:end])
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
