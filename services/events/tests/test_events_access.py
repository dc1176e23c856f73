"""Who may call which EventsService RPC."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import grpc
import pytest
from events_helpers import EventsClient, event, utc
from google.protobuf.message import Message
from retain.events.v1 import events_pb2

REQUESTS: dict[str, Message] = {
    "IngestEvents": events_pb2.IngestEventsRequest(
        events=[event("e1", 1, utc(2025, 1, 1))]
    ),
    "ListSequences": events_pb2.ListSequencesRequest(),
    "CountSequences": events_pb2.CountSequencesRequest(),
    "GetCustomerActivity": events_pb2.GetCustomerActivityRequest(customer_ids=[1]),
    "GetEventStats": events_pb2.GetEventStatsRequest(),
    "DeleteCustomerEvents": events_pb2.DeleteCustomerEventsRequest(customer_id=1),
}

ALLOWED = {
    "IngestEvents": {"operator", "envoy", "comms"},
    "ListSequences": {"inference", "operator"},
    "CountSequences": {"inference", "operator"},
    "GetCustomerActivity": {"inference", "comms", "operator"},
    "GetEventStats": {"operator", "envoy"},
    "DeleteCustomerEvents": {"user", "operator"},
}

CALLERS = ["user", "inference", "comms", "worker", "envoy", "operator", "stranger"]


@pytest.mark.parametrize("method", REQUESTS)
async def test_stranger_is_denied(
    connect: Callable[[str], EventsClient], method: str
) -> None:
    stub = connect("stranger")

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await getattr(stub, method)(REQUESTS[method], timeout=10)

    assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED


async def test_stranger_is_denied_a_stream(
    connect: Callable[[str], EventsClient],
) -> None:
    stub = connect("stranger")

    async def one_batch() -> AsyncIterator[events_pb2.StreamEventsRequest]:
        yield events_pb2.StreamEventsRequest(events=[event("s", 1, utc(2025, 1, 1))])

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.StreamEvents(one_batch(), timeout=10)

    assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED


@pytest.mark.parametrize("method", REQUESTS)
async def test_mesh_members_served_per_policy(
    connect: Callable[[str], EventsClient], method: str
) -> None:
    served = set()
    for name in CALLERS:
        try:
            await getattr(connect(name), method)(REQUESTS[method], timeout=10)
        except grpc.aio.AioRpcError as error:
            assert error.code() is grpc.StatusCode.PERMISSION_DENIED
        else:
            served.add(name)

    assert served == ALLOWED[method]
