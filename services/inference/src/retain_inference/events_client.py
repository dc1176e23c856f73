"""Reads from the events service: packed sequences and activity counts."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Sequence

import numpy as np
from retain.events.v1 import events_pb2, events_pb2_grpc

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


def _sequence(message: events_pb2.CustomerSequence) -> CustomerSequence:
    return CustomerSequence(
        customer_id=message.customer_id,
        occurred_s=np.array(message.occur_unix_seconds, dtype=np.int64),
        event_types=np.array(message.event_types, dtype=np.int32),
        amounts_micros=np.array(message.amounts_micros, dtype=np.int64),
    )
