"""Conversions between protobuf Timestamps and aware datetimes."""

from __future__ import annotations

import datetime as dt

from google.protobuf.timestamp_pb2 import Timestamp

from retain_runtime.errors import InvalidArgument


def to_datetime(ts: Timestamp) -> dt.datetime:
    """Return ts as an aware UTC datetime."""
    return ts.ToDatetime(tzinfo=dt.UTC)


def from_datetime(moment: dt.datetime | None) -> Timestamp | None:
    """Return moment as a Timestamp, None for None."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        raise ValueError(f"datetime {moment.isoformat()} has no UTC offset")
    ts = Timestamp()
    ts.FromDatetime(moment.astimezone(dt.UTC))
    return ts


def required(message: object, field: str, path: str | None = None) -> dt.datetime:
    """Return a Timestamp field as a datetime or raise InvalidArgument if unset."""
    if not message.HasField(field):  # type: ignore[attr-defined]
        raise InvalidArgument(path or field, "is required")
    return to_datetime(getattr(message, field))


def parse_iso(text: str, field: str) -> dt.datetime:
    """Parse an ISO 8601 time that carries a UTC offset."""
    try:
        moment = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidArgument(
            field, f'"{text}" is not an ISO 8601 time like 2024-01-31T08:00:00+03:00'
        ) from None
    if moment.tzinfo is None:
        raise InvalidArgument(
            field, f'"{text}" has no UTC offset; add one, for example +03:00 or Z'
        )
    return moment.astimezone(dt.UTC)
