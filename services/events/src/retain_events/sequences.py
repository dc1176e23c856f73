"""Pages of ListSequences, as CustomerSequence messages or as packed arrays.

The scoring path reads hundreds of thousands of customers. A packed page is
three little-endian byte arrays that the reader loads with numpy, so no
Python object is made per event on either side. The message form fills each
repeated field with one extend call per customer.
"""

from __future__ import annotations

import numpy as np
from retain.events.v1 import events_pb2
from retain_runtime import paging

from retain_events.store import SequencePage

DEFAULT_PAGE_SIZE = 1000
MAX_PAGE_SIZE = 10000
# A page stops before the customer that would take it past this many events,
# which keeps a reply under the 16 MiB gRPC message limit. Packed, 18 bytes per
# event make about 10.3 MiB, and messages take about 13 bytes per event. A
# customer with more events than this gets a page alone.
# NOTE: a customer with more than about 900,000 events still exceeds the limit.
MAX_PAGE_EVENTS = 600_000


def page_length(page: SequencePage, page_size: int) -> int:
    """Return how many of the fetched customers the reply may carry."""
    events_so_far = np.cumsum(page.event_counts[:page_size])
    length = int(np.searchsorted(events_so_far, MAX_PAGE_EVENTS, side="right"))
    return max(length, min(len(page), 1))


def respond(
    page: SequencePage, page_size: int, packed: bool
) -> events_pb2.ListSequencesResponse:
    """Build the reply from up to page_size + 1 customers; more rows mean more follow."""
    length = page_length(page, page_size)
    if packed:
        response = events_pb2.ListSequencesResponse()
        _pack(page, length, response.packed)
    else:
        response = _messages(page, length)
    if len(page) > length:
        last_customer_id = int(page.customer_ids[length - 1])
        response.next_page_token = paging.encode_token(last_customer_id)
    elif page.read_through is not None:
        # Every customer read is in the reply, and more rows may follow.
        response.next_page_token = paging.encode_token(page.read_through)
    return response


def _pack(page: SequencePage, length: int, packed: events_pb2.PackedSequences) -> None:
    """Fill the reply's own packed field, which skips a copy of a separate message."""
    packed.SetInParent()  # present even when the page is empty, as before
    events = int(page.event_counts[:length].sum())
    packed.customer_ids.extend(page.customer_ids[:length].tolist())
    packed.event_counts.extend(page.event_counts[:length].tolist())
    packed.occur_unix_seconds = page.occur_unix_seconds[:events].astype("<i8").tobytes()
    packed.event_types = page.event_types[:events].astype("<i2").tobytes()
    packed.amounts_micros = page.amounts_micros[:events].astype("<i8").tobytes()


def _messages(page: SequencePage, length: int) -> events_pb2.ListSequencesResponse:
    response = events_pb2.ListSequencesResponse()
    bounds = [0, *np.cumsum(page.event_counts[:length]).tolist()]
    customer_ids = page.customer_ids[:length].tolist()
    for customer_id, start, end in zip(
        customer_ids, bounds[:-1], bounds[1:], strict=True
    ):
        sequence = response.sequences.add(customer_id=customer_id)
        sequence.occur_unix_seconds.extend(page.occur_unix_seconds[start:end].tolist())
        sequence.event_types.extend(page.event_types[start:end].tolist())
        sequence.amounts_micros.extend(page.amounts_micros[start:end].tolist())
    return response
