"""EventsService RPCs: each calls the store and builds the reply.

Requests arrive already checked by the validators in validators.py.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable

import grpc
from retain.events.v1 import events_pb2, events_pb2_grpc
from retain_runtime import money, paging
from retain_runtime.callers import current_caller
from retain_runtime.clock import NAIROBI, Clock

from retain_events import windows
from retain_events.ingest import EventBatch, IngestCounts
from retain_events.sequences import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, respond
from retain_events.store import EventStore

log = logging.getLogger(__name__)


class EventsServicer(events_pb2_grpc.EventsServiceServicer):
    """The EventsService over one EventStore and the service clock."""

    def __init__(self, store: EventStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    async def _ingest(self, events: Iterable[events_pb2.Event]) -> IngestCounts:
        batch = EventBatch.from_events(events)
        counts = await self._store.ingest(batch)
        log.debug(
            "Ingested %d events: %d accepted, %d duplicates",
            len(batch) + batch.repeated_ids,
            counts.accepted,
            counts.duplicates,
        )
        return counts

    async def IngestEvents(
        self, request: events_pb2.IngestEventsRequest, context: grpc.aio.ServicerContext
    ) -> events_pb2.IngestEventsResponse:
        counts = await self._ingest(request.events)
        return events_pb2.IngestEventsResponse(
            accepted_count=counts.accepted, duplicate_count=counts.duplicates
        )

    async def StreamEvents(
        self,
        requests: AsyncIterator[events_pb2.StreamEventsRequest],
        context: grpc.aio.ServicerContext,
    ) -> events_pb2.StreamEventsResponse:
        # Each message is stored in its own transaction as it arrives, so an
        # invalid message later in the stream leaves earlier ones stored.
        total = IngestCounts()
        async for request in requests:
            total += await self._ingest(request.events)
        log.info(
            "Event stream ended: %d accepted, %d duplicates",
            total.accepted,
            total.duplicates,
        )
        return events_pb2.StreamEventsResponse(
            accepted_count=total.accepted, duplicate_count=total.duplicates
        )

    async def ListSequences(
        self,
        request: events_pb2.ListSequencesRequest,
        context: grpc.aio.ServicerContext,
    ) -> events_pb2.ListSequencesResponse:
        page_size = paging.page_size(
            request.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
        )
        after = paging.decode_token(request.page_token)
        first = max(request.min_customer_id, (after or 0) + 1)
        last = request.max_customer_id or 2**63 - 1
        end_time = windows.optional_time(request, "end_time") or windows.LATEST
        # One row beyond the page shows whether another page follows.
        page = await self._store.sequences(first, last, end_time, page_size + 1)
        return respond(page, page_size, request.packed)

    async def CountSequences(
        self,
        request: events_pb2.CountSequencesRequest,
        context: grpc.aio.ServicerContext,
    ) -> events_pb2.CountSequencesResponse:
        count = await self._store.count_sequences(
            request.min_customer_id,
            request.max_customer_id or 2**63 - 1,
            windows.optional_time(request, "end_time") or windows.LATEST,
        )
        return events_pb2.CountSequencesResponse(
            customer_count=count.customer_count,
            event_count=count.event_count,
            first_customer_id=count.first_customer_id,
            last_customer_id=count.last_customer_id,
        )

    async def GetCustomerActivity(
        self,
        request: events_pb2.GetCustomerActivityRequest,
        context: grpc.aio.ServicerContext,
    ) -> events_pb2.GetCustomerActivityResponse:
        start, end = windows.unbounded_window(
            windows.optional_time(request, "start_time"),
            windows.optional_time(request, "end_time"),
        )
        rows = await self._store.activity(list(request.customer_ids), start, end)
        response = events_pb2.GetCustomerActivityResponse()
        for row in rows:
            response.activities.add(
                customer_id=row.customer_id,
                event_count=row.event_count,
                amount=money.kes(row.amount_micros),
            )
        return response

    async def GetEventStats(
        self,
        request: events_pb2.GetEventStatsRequest,
        context: grpc.aio.ServicerContext,
    ) -> events_pb2.GetEventStatsResponse:
        start, end = windows.stats_window(
            windows.optional_time(request, "start_time"),
            windows.optional_time(request, "end_time"),
            self._clock.now(),
        )
        counts = await self._store.daily_counts(start, end, NAIROBI.key)
        by_day = {count.day: count for count in counts}
        event_count, customer_count = await self._store.totals()
        response = events_pb2.GetEventStatsResponse(
            event_count=event_count, customer_count=customer_count
        )
        for day in windows.nairobi_days(start, end):
            count = by_day.get(day)
            response.days.add(
                day=day.isoformat(),
                event_count=count.event_count if count else 0,
                active_customer_count=count.customer_count if count else 0,
            )
        return response

    async def DeleteCustomerEvents(
        self,
        request: events_pb2.DeleteCustomerEventsRequest,
        context: grpc.aio.ServicerContext,
    ) -> events_pb2.DeleteCustomerEventsResponse:
        deleted = await self._store.delete_customer(request.customer_id)
        caller = current_caller.get()
        log.info(
            "Deleted %d events of customer %d for %s",
            deleted,
            request.customer_id,
            caller.name if caller else "an unknown caller",
        )
        return events_pb2.DeleteCustomerEventsResponse(deleted_count=deleted)
