"""A batch of events laid out column by column, ready for one INSERT.

Event ids are idempotency keys. The store counts an id that the database
already contains as a duplicate. This module counts ids that repeat inside
the batch itself and keeps the first event with each id.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from retain.events.v1 import events_pb2
from retain_runtime.timestamps import to_datetime


@dataclass(frozen=True)
class IngestCounts:
    """How many events a request stored and how many it skipped as seen before."""

    accepted: int = 0
    duplicates: int = 0

    def __add__(self, other: IngestCounts) -> IngestCounts:
        return IngestCounts(
            self.accepted + other.accepted, self.duplicates + other.duplicates
        )


@dataclass
class EventBatch:
    """Validated events as parallel lists, one entry per distinct event id."""

    event_ids: list[str] = field(default_factory=list)
    customer_ids: list[int] = field(default_factory=list)
    event_types: list[int] = field(default_factory=list)
    occur_times: list[datetime] = field(default_factory=list)
    amounts_micros: list[int] = field(default_factory=list)
    currency_codes: list[str | None] = field(default_factory=list)
    attributes_json: list[str] = field(default_factory=list)
    # repeated_ids counts events whose id appeared earlier in the same batch.
    repeated_ids: int = 0

    @classmethod
    def from_events(cls, events: Iterable[events_pb2.Event]) -> EventBatch:
        """Lay out validated events, dropping repeats of an id within the batch."""
        batch = cls()
        seen: set[str] = set()
        for event in events:
            if event.event_id in seen:
                batch.repeated_ids += 1
                continue
            seen.add(event.event_id)
            batch._append(event)
        return batch

    def __len__(self) -> int:
        return len(self.event_ids)

    def _append(self, event: events_pb2.Event) -> None:
        self.event_ids.append(event.event_id)
        self.customer_ids.append(event.customer_id)
        self.event_types.append(event.type)
        # PostgreSQL keeps microseconds, so nanoseconds below them are dropped.
        self.occur_times.append(to_datetime(event.occur_time))
        if event.HasField("amount"):
            self.amounts_micros.append(event.amount.amount_micros)
            self.currency_codes.append(event.amount.currency_code)
        else:
            self.amounts_micros.append(0)
            self.currency_codes.append(None)
        attributes = dict(event.attributes)
        self.attributes_json.append(json.dumps(attributes) if attributes else "{}")
