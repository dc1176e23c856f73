"""SMS text rules: GSM-7 or UCS-2 detection and exact segment counts.

A GSM-7 message fits 160 characters in one part and 153 per part when split;
characters of the GSM extension table take two places. Any other character
makes the whole message UCS-2, which fits 70 UTF-16 code units in one part and
67 per part when split, so an emoji outside the Basic Multilingual Plane
takes two. Typographic quotes, dashes and ellipses are replaced by their
GSM-7 forms before counting, as ``normalise`` does.
"""

from __future__ import annotations

from dataclasses import dataclass

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")

_TYPOGRAPHIC = str.maketrans(
    {
        "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'",
        "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"',
        "\u2013": "-", "\u2014": "-", "\u2212": "-",
        "\u00a0": " ", "\u2009": " ", "\u202f": " ",
    }
)

GSM7 = "GSM-7"
UCS2 = "UCS-2"


@dataclass(frozen=True)
class SmsShape:
    """The SMS form of a text: its encoding, length in encoding units and parts."""

    encoding: str
    units: int
    segments: int


def normalise(text: str) -> str:
    """Replace typographic quotes, dashes, spaces and ellipses with GSM-7 forms."""
    return text.translate(_TYPOGRAPHIC).replace("\u2026", "...")


def shape(text: str) -> SmsShape:
    """Return the encoding and exact segment count of an already normalised text."""
    if all(ch in GSM7_BASIC or ch in GSM7_EXTENSION for ch in text):
        units = sum(2 if ch in GSM7_EXTENSION else 1 for ch in text)
        return SmsShape(GSM7, units, _segments(units, single=160, multi=153))
    units = len(text.encode("utf-16-le")) // 2
    return SmsShape(UCS2, units, _segments(units, single=70, multi=67))


def _segments(units: int, single: int, multi: int) -> int:
    if units <= single:
        return 1
    return -(-units // multi)
