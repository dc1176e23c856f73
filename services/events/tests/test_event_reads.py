"""ListSequences, GetCustomerActivity, GetEventStats and DeleteCustomerEvents."""

from __future__ import annotations

import datetime as dt

import grpc
import pytest
import sqlalchemy as sa
from events_helpers import (
    NOW,
    PURCHASE,
    TRIP,
    EventsClient,
    count_rows,
    event,
    ingest_request,
    utc,
)
from retain.events.v1 import events_pb2
from retain_runtime import paging
from retain_runtime.timestamps import from_datetime


async def ingest(client: EventsClient, events: list[events_pb2.Event]) -> None:
    await client.IngestEvents(ingest_request(events), timeout=10)


async def all_pages(
    client: EventsClient, request: events_pb2.ListSequencesRequest
) -> list[list[int]]:
    """Return the customer ids of each page, following next_page_token."""
    pages = []
    while True:
        reply = await client.ListSequences(request, timeout=10)
        pages.append([s.customer_id for s in reply.sequences])
        if not reply.next_page_token:
            return pages
        request.page_token = reply.next_page_token


async def test_sequence_is_columns_in_time_order(client: EventsClient) -> None:
    # Sent late and out of order: the third event happened first.
    await ingest(
        client,
        [
            event("b", 1, utc(2025, 1, 2, 12), TRIP, "200"),
            event("c", 1, utc(2025, 1, 3, 12), PURCHASE),
            event("a", 1, utc(2025, 1, 1, 12), PURCHASE, "50.5"),
        ],
    )

    reply = await client.ListSequences(events_pb2.ListSequencesRequest(), timeout=10)

    [sequence] = reply.sequences
    assert sequence.customer_id == 1
    assert list(sequence.occur_unix_seconds) == [
        int(utc(2025, 1, day, 12).timestamp()) for day in (1, 2, 3)
    ]
    assert list(sequence.event_types) == [PURCHASE, TRIP, PURCHASE]
    assert list(sequence.amounts_micros) == [50_500_000, 200_000_000, 0]
    assert reply.next_page_token == ""


async def test_sequence_reports_zero_for_other_currencies(
    client: EventsClient,
) -> None:
    await ingest(client, [event("usd", 1, utc(2025, 1, 1), TRIP, "3", "USD")])

    reply = await client.ListSequences(events_pb2.ListSequencesRequest(), timeout=10)

    assert list(reply.sequences[0].amounts_micros) == [0]


async def test_sequences_exclude_events_from_end_time(
    client: EventsClient,
) -> None:
    end = utc(2025, 2, 1)
    await ingest(
        client,
        [
            event("before", 1, end - dt.timedelta(seconds=1)),
            event("at", 1, end),
            event("after", 1, end + dt.timedelta(days=3)),
            event("only-after", 2, end + dt.timedelta(days=1)),
        ],
    )
    request = events_pb2.ListSequencesRequest(end_time=from_datetime(end))

    reply = await client.ListSequences(request, timeout=10)

    assert [s.customer_id for s in reply.sequences] == [1]
    assert list(reply.sequences[0].occur_unix_seconds) == [int(end.timestamp()) - 1]


async def test_sequences_page_each_customer_exactly_once(
    client: EventsClient,
) -> None:
    customers = [3, 5, 8, 13, 21, 34, 55]
    await ingest(
        client,
        [
            event(f"{c}-{n}", c, utc(2025, 1, 1 + n))
            for c in customers
            for n in range(3)
        ],
    )
    request = events_pb2.ListSequencesRequest(page_size=3)

    pages = await all_pages(client, request)

    assert pages == [[3, 5, 8], [13, 21, 34], [55]]


async def test_sequences_full_last_page_ends_paging(client: EventsClient) -> None:
    await ingest(client, [event(f"e{c}", c, utc(2025, 1, 1)) for c in (1, 2, 3, 4)])

    pages = await all_pages(client, events_pb2.ListSequencesRequest(page_size=2))

    assert pages == [[1, 2], [3, 4]]


async def test_sequences_page_token_is_last_customer_id(
    client: EventsClient,
) -> None:
    await ingest(client, [event(f"e{c}", c, utc(2025, 1, 1)) for c in (10, 20, 30)])

    reply = await client.ListSequences(
        events_pb2.ListSequencesRequest(page_size=2), timeout=10
    )

    assert paging.decode_token(reply.next_page_token) == 20


@pytest.mark.parametrize(
    ("min_id", "max_id", "expected"),
    [(0, 0, [1, 4, 7, 9]), (4, 0, [4, 7, 9]), (2, 7, [4, 7]), (9, 9, [9])],
    ids=["everything", "from 4", "4 to 7 inclusive", "one customer"],
)
async def test_sequences_keep_to_customer_id_range(
    client: EventsClient, min_id: int, max_id: int, expected: list[int]
) -> None:
    await ingest(client, [event(f"e{c}", c, utc(2025, 1, 1)) for c in (1, 4, 7, 9)])
    request = events_pb2.ListSequencesRequest(
        min_customer_id=min_id, max_customer_id=max_id, page_size=2
    )

    pages = await all_pages(client, request)

    assert [c for page in pages for c in page] == expected


BAD_LIST_REQUESTS = {
    "page_size over 10000": (
        events_pb2.ListSequencesRequest(page_size=10001),
        "page_size: 10001 is out of range",
    ),
    "negative min": (
        events_pb2.ListSequencesRequest(min_customer_id=-1),
        "min_customer_id: -1 must not be negative",
    ),
    "max below min": (
        events_pb2.ListSequencesRequest(min_customer_id=9, max_customer_id=3),
        "max_customer_id: 3 is below min_customer_id 9",
    ),
    "foreign token": (
        events_pb2.ListSequencesRequest(page_token="not-a-token"),
        'page_token: "not-a-token" is not a token this service issued',
    ),
}


@pytest.mark.parametrize(
    ("request_", "message"), BAD_LIST_REQUESTS.values(), ids=BAD_LIST_REQUESTS.keys()
)
async def test_bad_list_request_is_rejected(
    client: EventsClient, request_: events_pb2.ListSequencesRequest, message: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.ListSequences(request_, timeout=10)

    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert (caught.value.details() or "").startswith(message)


async def test_activity_follows_request_order(
    client: EventsClient,
) -> None:
    await ingest(
        client,
        [
            event("a1", 1, utc(2025, 1, 10), TRIP, "100"),
            event("a2", 1, utc(2025, 1, 11), TRIP, "20.5"),
            event("a3", 1, utc(2025, 1, 12), TRIP, "7", "USD"),
            event("b1", 2, utc(2025, 1, 10), PURCHASE),
        ],
    )
    request = events_pb2.GetCustomerActivityRequest(customer_ids=[2, 99, 1, 2])

    reply = await client.GetCustomerActivity(request, timeout=10)

    assert [a.customer_id for a in reply.activities] == [2, 99, 1, 2]
    assert [a.event_count for a in reply.activities] == [1, 0, 3, 1]
    assert [a.amount.amount_micros for a in reply.activities] == [
        0,
        0,
        120_500_000,
        0,
    ]
    assert {a.amount.currency_code for a in reply.activities} == {"KES"}


async def test_activity_window_is_half_open(client: EventsClient) -> None:
    start, end = utc(2025, 1, 10), utc(2025, 1, 20)
    await ingest(
        client,
        [
            event("before", 1, start - dt.timedelta(microseconds=1)),
            event("at-start", 1, start),
            event("inside", 1, utc(2025, 1, 15)),
            event("at-end", 1, end),
        ],
    )
    request = events_pb2.GetCustomerActivityRequest(
        customer_ids=[1], start_time=from_datetime(start), end_time=from_datetime(end)
    )

    reply = await client.GetCustomerActivity(request, timeout=10)

    assert reply.activities[0].event_count == 2


async def test_activity_rejects_window_ending_before_start(
    client: EventsClient,
) -> None:
    request = events_pb2.GetCustomerActivityRequest(
        customer_ids=[1],
        start_time=from_datetime(utc(2025, 2, 1)),
        end_time=from_datetime(utc(2025, 1, 1)),
    )

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.GetCustomerActivity(request, timeout=10)

    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert (caught.value.details() or "").startswith("start_time: must be before")


async def test_activity_rejects_more_than_10000_ids(client: EventsClient) -> None:
    request = events_pb2.GetCustomerActivityRequest(customer_ids=range(1, 10002))

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.GetCustomerActivity(request, timeout=10)

    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "customer_ids: has 10001 ids" in (caught.value.details() or "")


async def test_stats_bucket_events_by_nairobi_day(client: EventsClient) -> None:
    await ingest(
        client,
        [
            # 23:30 UTC is 02:30 the next day in Nairobi (UTC+3).
            event("late", 1, utc(2025, 2, 10, 23, 30)),
            event("morning", 2, utc(2025, 2, 11, 5)),
            event("again", 2, utc(2025, 2, 11, 6)),
            event("evening", 3, utc(2025, 2, 10, 20, 59)),
        ],
    )
    request = events_pb2.GetEventStatsRequest(
        start_time=from_datetime(utc(2025, 2, 9, 21)),
        end_time=from_datetime(utc(2025, 2, 11, 21)),
    )

    reply = await client.GetEventStats(request, timeout=10)

    days = [(d.day, d.event_count, d.active_customer_count) for d in reply.days]
    assert days == [("2025-02-10", 1, 1), ("2025-02-11", 3, 2)]


async def test_stats_default_to_90_days_before_now(client: EventsClient) -> None:
    await ingest(
        client,
        [
            event("old", 1, NOW - dt.timedelta(days=91)),
            event("recent", 1, NOW - dt.timedelta(days=2)),
            event("future", 2, NOW + dt.timedelta(hours=1)),
        ],
    )

    reply = await client.GetEventStats(events_pb2.GetEventStatsRequest(), timeout=10)

    first_day = (NOW - dt.timedelta(days=90)).date().isoformat()
    assert reply.days[0].day == first_day
    assert reply.days[-1].day == NOW.date().isoformat()
    assert sum(d.event_count for d in reply.days) == 1
    assert reply.event_count == 3
    assert reply.customer_count == 2


async def test_stats_list_days_without_events_as_zero(client: EventsClient) -> None:
    await ingest(client, [event("one", 1, utc(2025, 1, 2, 9))])
    request = events_pb2.GetEventStatsRequest(
        start_time=from_datetime(utc(2024, 12, 31, 21)),
        end_time=from_datetime(utc(2025, 1, 3, 21)),
    )

    reply = await client.GetEventStats(request, timeout=10)

    assert [(d.day, d.event_count) for d in reply.days] == [
        ("2025-01-01", 0),
        ("2025-01-02", 1),
        ("2025-01-03", 0),
    ]


async def test_stats_reject_window_over_3660_days(
    client: EventsClient,
) -> None:
    request = events_pb2.GetEventStatsRequest(
        start_time=from_datetime(utc(2000, 1, 1)),
        end_time=from_datetime(utc(2025, 1, 1)),
    )

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.GetEventStats(request, timeout=10)

    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "ask for at most 3660" in (caught.value.details() or "")


async def test_delete_removes_customer_events_and_ids(
    client: EventsClient, database: sa.Engine
) -> None:
    events = [event(f"x{n}", 1, utc(2025, 1, 1 + n)) for n in range(4)]
    await ingest(client, [*events, event("keep", 2, utc(2025, 1, 1))])

    reply = await client.DeleteCustomerEvents(
        events_pb2.DeleteCustomerEventsRequest(customer_id=1), timeout=10
    )

    assert reply.deleted_count == 4
    assert count_rows(database, "events") == 1
    assert count_rows(database, "event_ids") == 1
    # The ids are forgotten too, so the same events could be stored again.
    again = await client.IngestEvents(ingest_request(events), timeout=10)
    assert again.accepted_count == 4


async def test_stats_reject_end_past_last_nairobi_day(client: EventsClient) -> None:
    request = events_pb2.GetEventStatsRequest(
        start_time=from_datetime(utc(9999, 12, 30)),
        end_time=from_datetime(utc(9999, 12, 31, 22)),
    )

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.GetEventStats(request, timeout=10)

    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "past the last Nairobi day" in (caught.value.details() or "")
