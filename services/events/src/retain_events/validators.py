"""Request checks of EventsService, run once by the service interceptor.

Each check raises InvalidArgument with the path of the first bad field, such
as "events[3].occur_time". A batch with one bad event is rejected whole.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from retain.events.v1 import events_pb2
from retain_runtime import paging
from retain_runtime.errors import InvalidArgument
from retain_runtime.interceptor import Validator

from retain_events.sequences import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE

MAX_BATCH_EVENTS = 5000
MAX_EVENT_ID_CHARS = 128
MAX_ACTIVITY_CUSTOMERS = 10000

_CURRENCY_CODE = re.compile(r"[A-Z]{3}")
_EVENT_TYPES = frozenset(events_pb2.EventType.values()) - {
    events_pb2.EVENT_TYPE_UNSPECIFIED
}
# The range of google.protobuf.Timestamp, 0001-01-01 to 9999-12-31 UTC.
_MIN_SECONDS = -62_135_596_800
_MAX_SECONDS = 253_402_300_799
# Events may happen from 1950-01-01 up to, not including, 2100-01-01 UTC.
_FIRST_EVENT_SECONDS = -631_152_000
_END_EVENT_SECONDS = 4_102_444_800


def check_timestamp(ts: Timestamp, path: str) -> None:
    """Raise if ts lies outside the range a Timestamp may hold."""
    if not _MIN_SECONDS <= ts.seconds <= _MAX_SECONDS or not 0 <= ts.nanos < 10**9:
        raise InvalidArgument(
            path, f"seconds={ts.seconds} nanos={ts.nanos} is not a valid Timestamp"
        )


def _check_event_year(ts: Timestamp, path: str) -> None:
    # A year such as 1900 or 2999 is a typo in the source data, not an event.
    if not _FIRST_EVENT_SECONDS <= ts.seconds < _END_EVENT_SECONDS:
        moment = dt.datetime.fromtimestamp(ts.seconds, dt.UTC).isoformat()
        raise InvalidArgument(
            path, f"{moment} is outside 1950 to 2099; check the year in the source"
        )


def _check_text(value: str, path: str) -> None:
    # PostgreSQL text and jsonb cannot hold the NUL character.
    if "\x00" in value:
        raise InvalidArgument(path, "contains a NUL character; remove it")


def _check_event_id(event_id: str, path: str) -> None:
    if not 1 <= len(event_id) <= MAX_EVENT_ID_CHARS:
        raise InvalidArgument(
            path,
            f"has {len(event_id)} characters; "
            f"use a unique id of 1 to {MAX_EVENT_ID_CHARS}",
        )
    _check_text(event_id, path)


def _check_amount(event: events_pb2.Event, path: str) -> None:
    amount = event.amount
    if not _CURRENCY_CODE.fullmatch(amount.currency_code):
        raise InvalidArgument(
            f"{path}.currency_code",
            f'"{amount.currency_code}" is not a 3-letter ISO 4217 code like "KES"',
        )
    if amount.amount_micros < 0:
        raise InvalidArgument(
            f"{path}.amount_micros", f"{amount.amount_micros} must not be negative"
        )


def check_event(event: events_pb2.Event, path: str) -> None:
    """Raise InvalidArgument naming the first bad field of one event."""
    _check_event_id(event.event_id, f"{path}.event_id")
    if event.customer_id <= 0:
        raise InvalidArgument(
            f"{path}.customer_id",
            f"{event.customer_id} must be positive; use the id from LookupCustomers",
        )
    if event.type not in _EVENT_TYPES:
        raise InvalidArgument(
            f"{path}.type", f"{event.type} is not a known EventType; set one"
        )
    if not event.HasField("occur_time"):
        raise InvalidArgument(f"{path}.occur_time", "is required")
    check_timestamp(event.occur_time, f"{path}.occur_time")
    _check_event_year(event.occur_time, f"{path}.occur_time")
    if event.HasField("amount"):
        _check_amount(event, f"{path}.amount")
    for key, value in event.attributes.items():
        _check_text(key, f"{path}.attributes")
        _check_text(value, f"{path}.attributes[{key!r}]")


def check_events(events: Sequence[events_pb2.Event]) -> None:
    """Raise unless the batch contains 1 to 5000 valid events."""
    if not 1 <= len(events) <= MAX_BATCH_EVENTS:
        raise InvalidArgument(
            "events",
            f"has {len(events)} events; send 1 to {MAX_BATCH_EVENTS} per request",
        )
    for index, event in enumerate(events):
        check_event(event, f"events[{index}]")


def _check_window(request: Any) -> None:
    for name in ("start_time", "end_time"):
        if request.HasField(name):
            check_timestamp(getattr(request, name), name)
    if (
        request.HasField("start_time")
        and request.HasField("end_time")
        and request.start_time.ToNanoseconds() >= request.end_time.ToNanoseconds()
    ):
        raise InvalidArgument(
            "start_time", "must be before end_time; the window is [start, end)"
        )


def check_ingest(request: events_pb2.IngestEventsRequest) -> None:
    check_events(request.events)


def check_stream(request: events_pb2.StreamEventsRequest) -> None:
    check_events(request.events)


def check_list_sequences(request: events_pb2.ListSequencesRequest) -> None:
    """Raise unless the customer id range, end time and paging are valid."""
    check_sequence_range(request)
    paging.page_size(request.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    paging.decode_token(request.page_token)


def check_sequence_range(
    request: events_pb2.ListSequencesRequest | events_pb2.CountSequencesRequest,
) -> None:
    """Raise unless the customer id range and end time are valid."""
    for name in ("min_customer_id", "max_customer_id"):
        if getattr(request, name) < 0:
            raise InvalidArgument(
                name, f"{getattr(request, name)} must not be negative"
            )
    if 0 < request.max_customer_id < request.min_customer_id:
        raise InvalidArgument(
            "max_customer_id",
            f"{request.max_customer_id} is below min_customer_id "
            f"{request.min_customer_id}; use 0 for no upper bound",
        )
    if request.HasField("end_time"):
        check_timestamp(request.end_time, "end_time")


def check_customer_activity(request: events_pb2.GetCustomerActivityRequest) -> None:
    """Raise unless 1 to 10000 positive ids and a valid window are given."""
    count = len(request.customer_ids)
    if not 1 <= count <= MAX_ACTIVITY_CUSTOMERS:
        raise InvalidArgument(
            "customer_ids",
            f"has {count} ids; send 1 to {MAX_ACTIVITY_CUSTOMERS} per request",
        )
    for index, customer_id in enumerate(request.customer_ids):
        if customer_id <= 0:
            raise InvalidArgument(
                f"customer_ids[{index}]", f"{customer_id} must be positive"
            )
    _check_window(request)


def check_event_stats(request: events_pb2.GetEventStatsRequest) -> None:
    _check_window(request)


def check_delete(request: events_pb2.DeleteCustomerEventsRequest) -> None:
    if request.customer_id <= 0:
        raise InvalidArgument("customer_id", f"{request.customer_id} must be positive")


VALIDATORS: Mapping[str, Validator] = {
    "IngestEvents": check_ingest,
    "StreamEvents": check_stream,
    "ListSequences": check_list_sequences,
    "CountSequences": check_sequence_range,
    "GetCustomerActivity": check_customer_activity,
    "GetEventStats": check_event_stats,
    "DeleteCustomerEvents": check_delete,
}
