"""AT wire-format helpers: segments, money, number checks, statuses and masking."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from retain_emulator.wire import (
    KENYA_MOBILE_PATTERN,
    count_segments,
    format_money,
    format_total_cost,
    is_valid_number,
    mask_number,
    resolve_recipient_status,
    split_recipients,
)


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("a", 1),
        ("a" * 160, 1),
        ("a" * 161, 2),
        ("a" * 306, 2),
        ("a" * 307, 3),
        ("€" * 80, 1),
        ("€" * 81, 2),
        ("ж" * 70, 1),
        ("ж" * 71, 2),
        ("ж" * 134, 2),
        ("ж" * 135, 3),
        ("😀" * 35, 1),
        ("😀" * 36, 2),
    ],
)
def test_segment_count_follows_gsm7_and_ucs2_limits(text: str, parts: int) -> None:
    assert count_segments(text) == parts


def test_one_non_gsm_character_switches_to_ucs2() -> None:
    assert count_segments("a" * 70) == 1
    assert count_segments("a" * 69 + "ж") == 1
    assert count_segments("a" * 70 + "ж") == 2


@pytest.mark.parametrize(
    ("number", "valid"),
    [
        ("+254712345678", True),
        ("+254112345678", True),
        ("+254812345678", False),
        ("254712345678", False),
        ("0712345678", False),
        ("+25471234567", False),
        ("+2547123456789", False),
        ("+254 712345678", False),
    ],
)
def test_kenyan_mobile_number_check(number: str, valid: bool) -> None:
    assert is_valid_number(number, re.compile(KENYA_MOBILE_PATTERN)) is valid


def test_money_uses_four_decimal_places() -> None:
    assert format_money("KES", Decimal("0.8")) == "KES 0.8000"
    assert format_money("KES", Decimal("1234.56")) == "KES 1234.5600"


def test_zero_total_cost_is_bare_zero() -> None:
    assert format_total_cost("KES", Decimal(0)) == "0"
    assert format_total_cost("KES", Decimal("1.6")) == "KES 1.6000"


def test_status_resolves_from_name_code_or_alias() -> None:
    assert resolve_recipient_status("UserInBlacklist") == ("UserInBlacklist", 406)
    assert resolve_recipient_status(403) == ("InvalidPhoneNumber", 403)
    assert resolve_recipient_status("Sent") == ("Success", 101)


@pytest.mark.parametrize("status", ["Blocked", 499, 101.0])
def test_unknown_status_is_rejected(status: object) -> None:
    with pytest.raises(ValueError, match="unknown recipient status"):
        resolve_recipient_status(status)  # type: ignore[arg-type]


def test_recipients_split_on_commas_and_trim() -> None:
    assert split_recipients(" +254712345678 ,,+254112345678, ") == [
        "+254712345678",
        "+254112345678",
    ]


def test_mask_keeps_prefix_and_last_two_digits() -> None:
    assert mask_number("+254712345601") == "+2547******01"
    assert mask_number("12345") == "*****"
