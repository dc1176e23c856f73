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
            "page_size", f"{value} is out of range; use 1 to {maximum}, or 0 for {default}"
        )
    return value


def encode_token(after: int) -> str:
    """Return a page token that resumes after the key after."""
    raw = json.dumps({"after": after}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str) -> int | None:
    """Return the key a token resumes after, None for an empty token."""
    if not token:
        return None
    try:
        padded = token + "=" * (-len(token) % 4)
        after = json.loads(base64.urlsafe_b64decode(padded))["after"]
    except (binascii.Error, ValueError, KeyError, TypeError):
        after = None
    if not isinstance(after, int):
        raise InvalidArgument(
            "page_token",
            f'"{token}" is not a token this service issued; pass next_page_token as is',
        )
    return after
