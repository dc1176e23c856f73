"""Per-customer event histories, the input of feature building, training and scoring.

The events service delivers one `CustomerSequence` per customer and the gRPC layer
converts its messages to this form. `group_events` builds the same records from flat
arrays, for example from a table of transactions.
"""

import logging
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger(__name__)

PURCHASE_EVENT_TYPE = 1
"""Event type code of a purchase or trip. Code 0 is reserved and marks padding."""


@dataclass(frozen=True, eq=False)
class CustomerSequence:
    """One customer's events, sorted by time.

    The three arrays have one element per event. `features.to_event_table` checks
    that they have equal lengths and that times ascend.
    """

    customer_id: int
    occurred_s: np.ndarray  # int64 (n,), Unix seconds UTC, ascending
    event_types: np.ndarray  # int32 (n,), event type codes, 0 reserved
    amounts_micros: np.ndarray  # int64 (n,), millionths of KES, 0 when none


def group_events(
    customer_ids: np.ndarray,
    occurred_s: np.ndarray,
    event_types: np.ndarray,
    amounts_micros: np.ndarray,
) -> list[CustomerSequence]:
    """Split flat event arrays into one `CustomerSequence` per customer.

    The arrays may come in any order. The result is sorted by customer id, and each
    customer's events by time.
    """
    customer_ids = np.asarray(customer_ids, dtype=np.int64)
    occurred_s = np.asarray(occurred_s, dtype=np.int64)
    event_types = np.asarray(event_types, dtype=np.int32)
    amounts_micros = np.asarray(amounts_micros, dtype=np.int64)
    sizes = {a.shape for a in (customer_ids, occurred_s, event_types, amounts_micros)}
    if len(sizes) != 1:
        raise ValueError(
            f"event arrays must have one shape, got shapes {sorted(sizes)}"
        )

    order = np.lexsort((occurred_s, customer_ids))
    customer_ids = customer_ids[order]
    unique_ids, starts = np.unique(customer_ids, return_index=True)
    bounds = np.append(starts, customer_ids.shape[0])
    occurred_s = occurred_s[order]
    event_types = event_types[order]
    amounts_micros = amounts_micros[order]

    sequences = []
    for i, customer_id in enumerate(unique_ids.tolist()):
        events = slice(bounds[i], bounds[i + 1])
        sequences.append(
            CustomerSequence(
                customer_id=customer_id,
                occurred_s=occurred_s[events],
                event_types=event_types[events],
                amounts_micros=amounts_micros[events],
            )
        )
    logger.debug("Grouped %d events into %d customers.", order.shape[0], len(sequences))
    return sequences
