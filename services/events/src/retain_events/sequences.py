"""Packing of per-customer event columns into CustomerSequence messages.

The scoring path reads hundreds of thousands of customers, so each message is
filled with whole lists through the repeated fields' extend instead of one
message or append per event.
"""

from __future__ import annotations

from collections.abc import Iterable

from retain.events.v1 import events_pb2
from retain_runtime import paging

from retain_events.store import SequenceRow

DEFAULT_PAGE_SIZE = 1000
MAX_PAGE_SIZE = 10000


def pack(
    rows: Iterable[SequenceRow], page_size: int
) -> events_pb2.ListSequencesResponse:
    """Build a page from up to page_size + 1 rows; the extra row means more follow."""
    response = events_pb2.ListSequencesResponse()
    last_customer_id = 0
    for count, row in enumerate(rows):
        if count == page_size:
            response.next_page_token = paging.encode_token(last_customer_id)
            break
        sequence = response.sequences.add(customer_id=row.customer_id)
        sequence.occur_unix_seconds.extend(row.occur_unix_seconds)
        sequence.event_types.extend(row.event_types)
        sequence.amounts_micros.extend(row.amounts_micros)
        last_customer_id = row.customer_id
    return response
