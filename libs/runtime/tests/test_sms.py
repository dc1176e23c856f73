"""Segment counting for GSM-7 and UCS-2 texts."""

from __future__ import annotations

import pytest

from retain_runtime.sms import GSM7, UCS2, normalise, shape


@pytest.mark.parametrize(
    ("text", "encoding", "segments"),
    [
        ("a" * 160, GSM7, 1),
        ("a" * 161, GSM7, 2),
        ("a" * 306, GSM7, 2),
        ("a" * 307, GSM7, 3),
        ("€" * 80, GSM7, 1),
        ("€" * 81, GSM7, 2),
        ("ą" * 70, UCS2, 1),
        ("ą" * 71, UCS2, 2),
        ("😀" * 35, UCS2, 1),
        ("😀" * 36, UCS2, 2),
        ("", GSM7, 1),
    ],
    ids=[
        "gsm-160", "gsm-161", "gsm-306", "gsm-307", "euro-80", "euro-81",
        "ucs-70", "ucs-71", "emoji-35", "emoji-36", "empty",
    ],
)
def test_shape_counts_segments(text: str, encoding: str, segments: int) -> None:
    result = shape(text)
    assert result.encoding == encoding
    assert result.segments == segments


def test_extension_characters_count_double() -> None:
    assert shape("[]").units == 4


def test_typographic_quotes_become_gsm() -> None:
    text = normalise("\u201cKaribu\u201d \u2013 it\u2019s here\u2026")
    assert text == "\"Karibu\" - it's here..."
    assert shape(text).encoding == GSM7
