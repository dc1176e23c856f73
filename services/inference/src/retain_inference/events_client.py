"""Reads from the events service: packed sequences and activity counts."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Sequence

import numpy as np
from retain.events.v1 import events_pb2, events_pb2_grpc

from retain_inference.features import EventTable, event_table_from_counts
from retain_inference.sequences import CustomerSequence
from retain_runtime.timestamps import from_datetime

ACTIVITY_BATCH = 10_000


class EventsClient:
    """Pages through the events service over an mTLS channel."""

    def __init__(
        self, stub: events_pb2_grpc.EventsServiceStub, timeout: float = 120
    ) -> None:
        self.stub = stub
        self.timeout = timeout

    async def sequence_pages(
        self,
        end_time: dt.datetime,
        page_size: int,
        min_customer_id: int = 0,
        max_customer_id: int = 0,
    ) -> AsyncIterator[list[CustomerSequence]]:
        """Yield pages of customers' events strictly before end_time."""
        token = ""
        while True:
            reply = await self.stub.ListSequences(
                events_pb2.ListSequencesRequest(
                    min_customer_id=min_customer_id,
                    max_customer_id=max_customer_id,
                    end_time=from_datetime(end_time),
                    page_size=page_size,
                    page_token=token,
                ),
                timeout=self.timeout,
            )
            yield [_sequence(s) for s in reply.sequences]
            token = reply.next_page_token
            if not token:
                return

    async def table_pages(
        self,
        end_time: dt.datetime,
        page_size: int,
        min_customer_id: int = 0,
        max_customer_id: int = 0,
    ) -> AsyncIterator[EventTable]:
        """Yield packed pages of customers' events strictly before end_time."""
        token = ""
        while True:
            reply = await self.stub.ListSequences(
                events_pb2.ListSequencesRequest(
                    min_customer_id=min_customer_id,
                    max_customer_id=max_customer_id,
                    end_time=from_datetime(end_time),
                    page_size=page_size,
                    page_token=token,
                    packed=True,
                ),
                timeout=self.timeout,
            )
            yield table_from_packed(reply.packed)
            token = reply.next_page_token
            if not token:
                return

    async def count_customers(
        self, end_time: dt.datetime, min_customer_id: int = 0, max_customer_id: int = 0
    ) -> events_pb2.CountSequencesResponse:
        """Count the customers with events before end_time in the id range."""
        return await self.stub.CountSequences(
            events_pb2.CountSequencesRequest(
                min_customer_id=min_customer_id,
                max_customer_id=max_customer_id,
                end_time=from_datetime(end_time),
            ),
            timeout=self.timeout,
        )

    async def event_counts(
        self, customer_ids: Sequence[int], start: dt.datetime, end: dt.datetime
    ) -> np.ndarray:
        """Return each customer's event count in [start, end), in the given order."""
        counts = np.zeros(len(customer_ids), dtype=np.int64)
        for offset in range(0, len(customer_ids), ACTIVITY_BATCH):
            batch = list(customer_ids[offset : offset + ACTIVITY_BATCH])
            reply = await self.stub.GetCustomerActivity(
                events_pb2.GetCustomerActivityRequest(
                    customer_ids=batch,
                    start_time=from_datetime(start),
                    end_time=from_datetime(end),
                ),
                timeout=self.timeout,
            )
            for index, activity in enumerate(reply.activities):
                counts[offset + index] = activity.event_count
        return counts


def table_from_packed(packed: events_pb2.PackedSequences) -> EventTable:
    # frombuffer reads the bytes in place; the arrays are read-only views.
    return event_table_from_counts(
        customer_ids=np.array(packed.customer_ids, dtype=np.int64),
        event_counts=np.array(packed.event_counts, dtype=np.int64),
        occurred_s=np.frombuffer(packed.occur_unix_seconds, dtype="<i8"),
        event_types=np.frombuffer(packed.event_types, dtype="<i2"),
        amounts_micros=np.frombuffer(packed.amounts_micros, dtype="<i8"),
    )


def _sequence(message: events_pb2.CustomerSequence) -> CustomerSequence:
    return CustomerSequence(
        customer_id=message.customer_id,
        occurred_s=np.array(message.occur_unix_seconds, dtype=np.int64),
        event_types=np.array(message.event_types, dtype=np.int32),
        amounts_micros=np.array(message.amounts_micros, dtype=np.int64),
    )
