"""The send window: the minutes of the Nairobi day in which marketing may go out.

A window whose start is after its end wraps past midnight, so 1320 to 360 is
22:00 to 06:00. Africa/Nairobi has no daylight saving time, so every day has
1440 minutes.
"""

from __future__ import annotations

import datetime as dt

from retain_runtime.clock import NAIROBI


def is_open(now: dt.datetime, start_minute: int, end_minute: int) -> bool:
    """Return whether now falls inside the window."""
    minute = _minute_of_day(now)
    if start_minute < end_minute:
        return start_minute <= minute < end_minute
    return minute >= start_minute or minute < end_minute


def next_opening(now: dt.datetime, start_minute: int, end_minute: int) -> dt.datetime:
    """Return the next moment, in UTC, at which the window opens after now."""
    local = now.astimezone(NAIROBI)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    opening = midnight + dt.timedelta(minutes=start_minute)
    if opening <= local:
        opening += dt.timedelta(days=1)
    return opening.astimezone(dt.UTC)


def _minute_of_day(now: dt.datetime) -> int:
    local = now.astimezone(NAIROBI)
    return local.hour * 60 + local.minute
