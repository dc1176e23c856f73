"""Time windows of the read RPCs and the Nairobi days they cover.

Windows are half-open, [start, end). An unset bound of GetCustomerActivity
or ListSequences is unbounded; GetEventStats defaults to the 90 days before
the service clock's now.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from retain_runtime.clock import NAIROBI
from retain_runtime.errors import InvalidArgument
from retain_runtime.timestamps import to_datetime

STATS_DEFAULT_SPAN = dt.timedelta(days=90)
# A stats reply lists every day of its window, so the window is capped to
# about ten years (a reply under 100 KB).
STATS_MAX_DAYS = 3660

# The earliest and latest instants that both Timestamp and timestamptz hold,
# used in place of an unset bound.
EARLIEST = dt.datetime(1, 1, 1, tzinfo=dt.UTC)
LATEST = dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=dt.UTC)


def optional_time(message: Any, field: str) -> dt.datetime | None:
    """Return a Timestamp field of message as a datetime, None when unset."""
    if not message.HasField(field):
        return None
    return to_datetime(getattr(message, field))


def unbounded_window(
    start: dt.datetime | None, end: dt.datetime | None
) -> tuple[dt.datetime, dt.datetime]:
    """Return the window with EARLIEST and LATEST in place of unset bounds."""
    return start or EARLIEST, end or LATEST


def stats_window(
    start: dt.datetime | None, end: dt.datetime | None, now: dt.datetime
) -> tuple[dt.datetime, dt.datetime]:
    """Return the stats window, filling unset bounds from now, or raise."""
    end = end or now
    start = start or end - STATS_DEFAULT_SPAN
    if start >= end:
        raise InvalidArgument(
            "start_time",
            f"{start.isoformat()} is not before end_time {end.isoformat()}; "
            "set start_time earlier or end_time later",
        )
    first, last = _first_and_last_day(start, end)
    days = (last - first).days + 1
    if days > STATS_MAX_DAYS:
        raise InvalidArgument(
            "start_time",
            f"the window covers {days} days; ask for at most {STATS_MAX_DAYS}",
        )
    return start, end


def nairobi_days(start: dt.datetime, end: dt.datetime) -> list[dt.date]:
    """Return each Nairobi calendar day that overlaps [start, end), in order."""
    first, last = _first_and_last_day(start, end)
    return [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]


def _first_and_last_day(
    start: dt.datetime, end: dt.datetime
) -> tuple[dt.date, dt.date]:
    try:
        first = start.astimezone(NAIROBI).date()
        last = (end - dt.timedelta(microseconds=1)).astimezone(NAIROBI).date()
    except OverflowError:
        # In Nairobi, instants after 9999-12-31T21:00:00Z fall in year 10000.
        raise InvalidArgument(
            "end_time", f"{end.isoformat()} is past the last Nairobi day 9999-12-31"
        ) from None
    return first, last
