"""Kenyan mobile numbers: parsing the common written forms into E.164."""

from __future__ import annotations

import re

from retain_runtime.errors import InvalidArgument

_SEPARATORS = re.compile(r"[\s\-().]")
# Kenyan mobile numbers are 254 followed by 7xx or 1xx and six more digits.
_NATIONAL = re.compile(r"^(?:\+?254|0)?([71]\d{8})$")


def normalise_phone(raw: str, field: str = "phone_number") -> str:
    """Return raw as E.164 (+2547XXXXXXXX) or raise InvalidArgument naming field."""
    compact = _SEPARATORS.sub("", raw)
    match = _NATIONAL.match(compact)
    if not match:
        raise InvalidArgument(
            field,
            f'phone "{raw}" is not a Kenyan mobile number; '
            "use a form like 0712345678 or +254712345678",
        )
    return "+254" + match.group(1)
