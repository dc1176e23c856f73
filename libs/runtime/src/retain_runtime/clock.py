"""The one clock that every time-dependent rule reads.

A clock runs at real speed from an offset, so the demo can live "as of"
1997-09-30 and tests can move time without sleeping. Every process of one
stack receives the same offset through RETAIN_CLOCK_OFFSET_SECONDS.
"""

from __future__ import annotations

import datetime as dt
import time
from zoneinfo import ZoneInfo

NAIROBI = ZoneInfo("Africa/Nairobi")


class Clock:
    """Wall time shifted by a fixed number of seconds."""

    def __init__(self, offset_seconds: float = 0.0) -> None:
        self.offset_seconds = offset_seconds

    @classmethod
    def starting_at(cls, start: dt.datetime) -> Clock:
        """Return a clock whose now() is start at this moment."""
        if start.tzinfo is None:
            raise ValueError(f"clock start {start.isoformat()} has no UTC offset")
        return cls(start.timestamp() - time.time())

    def now(self) -> dt.datetime:
        """Return the current time in UTC."""
        return dt.datetime.fromtimestamp(time.time() + self.offset_seconds, dt.UTC)

    def set(self, moment: dt.datetime) -> None:
        """Move the clock so that now() is moment; used by tests."""
        self.offset_seconds = moment.timestamp() - time.time()

    def advance(self, seconds: float) -> None:
        """Move the clock forward; used by tests."""
        self.offset_seconds += seconds
