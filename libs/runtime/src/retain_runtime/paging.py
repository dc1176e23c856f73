"""The one paging convention: page_size, page_token and next_page_token.

A page token is an opaque, URL-safe encoding of the last key returned.
"""

from __future__ import annotations

import base64
import binascii
import json

from retain_runtime.errors import InvalidArgument


def page_size(value: int, default: int = 100, maximum: int = 1000) -> int:
    """Return the effective page size or raise InvalidArgument."""
    if value == 0:
        return default
    if value < 0 or value > maximum:
        raise InvalidArgument(
            "page_size",
            f"{value} is out of range; use 1 to {maximum}, or 0 for {default}",
        )
    return value


def encode_token(after: int, value: float | None = None) -> str:
    """Return a page token that resumes after the key after.

    value is the sort value of that key for lists sorted by something else
    first, such as a probability.
    """
    fields: dict[str, float] = {"after": after}
    if value is not None:
        fields["value"] = value
    raw = json.dumps(fields).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str) -> int | None:
    """Return the key a token resumes after, None for an empty token."""
    position = decode_position(token)
    return None if position is None else position[0]


def decode_position(token: str) -> tuple[int, float | None] | None:
    """Return the key and sort value a token resumes after, None for an empty token."""
    if not token:
        return None
    try:
        padded = token + "=" * (-len(token) % 4)
        fields = json.loads(base64.urlsafe_b64decode(padded))
        after, value = fields["after"], fields.get("value")
    except (binascii.Error, ValueError, KeyError, TypeError, AttributeError):
        after, value = None, None
    valid_value = value is None or (
        isinstance(value, (int, float)) and not isinstance(value, bool)
    )
    if (
        not isinstance(after, int)
        or isinstance(after, bool)
        or after < 0
        or not valid_value
    ):
        raise InvalidArgument(
            "page_token",
            f'"{token}" is not a token this service issued; pass next_page_token as is',
        )
    return after, None if value is None else float(value)
