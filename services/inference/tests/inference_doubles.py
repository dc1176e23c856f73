"""A stand-in for the events service that serves synthetic customers over mTLS.

It serves ListSequences (as messages or packed), CountSequences and
GetCustomerActivity from a dict, paged like the real service, so the inference
tests exercise the inference side alone.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
from retain.events.v1 import events_pb2, events_pb2_grpc
from retain_runtime.callers import CallPolicy
from retain_runtime.server import RunningServer, create_server
from retain_runtime.settings import ServiceSettings
from retain_runtime.timestamps import to_datetime

UTC = dt.UTC
DAY = 86_400
SERVICE = "retain.events.v1.EventsService"
READERS = ["inference", "operator"]

# Events per customer id: (Unix seconds, amount in micros of KES), in time order.
CustomerEvents = dict[int, list[tuple[int, int]]]


def synthetic_events(customers: int = 240) -> CustomerEvents:
    """Return events per customer: loyal ones keep buying, churners stop early."""
    rng = np.random.default_rng(7)
    start = int(dt.datetime(2024, 1, 1, tzinfo=UTC).timestamp())
    end = int(dt.datetime(2024, 6, 1, tzinfo=UTC).timestamp())
    events = {}
    for customer_id in range(1, customers + 1):
        stop = end if customer_id % 3 else start + int(rng.integers(20, 80)) * DAY
        gap = int(rng.integers(3, 15)) * DAY
        times = list(range(start + int(rng.integers(0, 10)) * DAY, stop, gap))
        events[customer_id] = [(t, 1_000_000 * int(rng.integers(1, 50))) for t in times]
    return events


class FakeEvents(events_pb2_grpc.EventsServiceServicer):
    """Serves sequences, counts and activity from a dict of customers' events."""

    def __init__(self, events: CustomerEvents) -> None:
        self.events = events

    def _customers(self, request, after: int = 0) -> list[tuple[int, list]]:
        """Return the customers in the request's range with events before end_time."""
        end = (
            to_datetime(request.end_time).timestamp()
            if request.HasField("end_time")
            else 1e18
        )
        found = []
        for customer_id in sorted(self.events):
            if customer_id <= after or customer_id < request.min_customer_id:
                continue
            if request.max_customer_id and customer_id > request.max_customer_id:
                continue
            rows = [(t, a) for t, a in self.events[customer_id] if t < end]
            if rows:
                found.append((customer_id, rows))
        return found

    async def ListSequences(self, request, context):
        page_size = request.page_size or 1000
        customers = self._customers(request, int(request.page_token or 0))
        page = customers[:page_size]
        if request.packed:
            reply = events_pb2.ListSequencesResponse(packed=_packed(page))
        else:
            reply = events_pb2.ListSequencesResponse()
            for customer_id, rows in page:
                reply.sequences.add(
                    customer_id=customer_id,
                    occur_unix_seconds=[t for t, _ in rows],
                    event_types=[events_pb2.EVENT_TYPE_PURCHASE] * len(rows),
                    amounts_micros=[a for _, a in rows],
                )
        if len(customers) > page_size:
            reply.next_page_token = str(page[-1][0])
        return reply

    async def CountSequences(self, request, context):
        customers = self._customers(request)
        ids = [customer_id for customer_id, _ in customers]
        return events_pb2.CountSequencesResponse(
            customer_count=len(ids),
            event_count=sum(len(rows) for _, rows in customers),
            first_customer_id=min(ids, default=0),
            last_customer_id=max(ids, default=0),
        )

    async def GetCustomerActivity(self, request, context):
        start = to_datetime(request.start_time).timestamp()
        end = to_datetime(request.end_time).timestamp()
        reply = events_pb2.GetCustomerActivityResponse()
        for customer_id in request.customer_ids:
            count = sum(
                1 for t, _ in self.events.get(customer_id, []) if start <= t < end
            )
            reply.activities.add(customer_id=customer_id, event_count=count)
        return reply


def _packed(page: list[tuple[int, list]]) -> events_pb2.PackedSequences:
    rows = [row for _, customer_rows in page for row in customer_rows]
    times = np.array([t for t, _ in rows], dtype="<i8")
    amounts = np.array([a for _, a in rows], dtype="<i8")
    types = np.full(len(rows), events_pb2.EVENT_TYPE_PURCHASE, dtype="<i2")
    return events_pb2.PackedSequences(
        customer_ids=[customer_id for customer_id, _ in page],
        event_counts=[len(customer_rows) for _, customer_rows in page],
        occur_unix_seconds=times.tobytes(),
        event_types=types.tobytes(),
        amounts_micros=amounts.tobytes(),
    )


async def start_fake_events(cert_dir: Path, fake: FakeEvents) -> RunningServer:
    """Serve fake on a free port with the events service's mesh certificate."""
    settings = ServiceSettings.from_env(
        "events",
        {
            "RETAIN_EVENTS_PORT": "0",
            "RETAIN_EVENTS_DATABASE_URL": "unused",
            "RETAIN_CERT_DIR": str(cert_dir),
        },
    )
    policy = CallPolicy(
        SERVICE,
        {
            "ListSequences": READERS,
            "CountSequences": READERS,
            "GetCustomerActivity": READERS,
        },
    )
    return await create_server(
        settings,
        SERVICE,
        lambda server: events_pb2_grpc.add_EventsServiceServicer_to_server(
            fake, server
        ),
        policy,
    )
