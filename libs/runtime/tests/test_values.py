"""Phone numbers, money, page tokens and times: the input rules every service shares."""

from __future__ import annotations

import base64
import datetime as dt
import json

import pytest

from retain_runtime.errors import InvalidArgument
from retain_runtime.logs import mask_phone
from retain_runtime.money import format_micros, parse_provider_cost, to_micros
from retain_runtime.paging import decode_position, decode_token, encode_token, page_size
from retain_runtime.phone import normalise_phone
from retain_runtime.timestamps import parse_iso


@pytest.mark.parametrize(
    "raw",
    [
        "0712345678",
        "0712 345 678",
        "0712-345-678",
        "254712345678",
        "+254712345678",
        "+254 712 345 678",
        "712345678",
    ],
    ids=["07", "spaces", "dashes", "254", "e164", "e164-spaces", "bare"],
)
def test_kenyan_forms_normalise_to_e164(raw: str) -> None:
    assert normalise_phone(raw) == "+254712345678"


def test_01_numbers_are_mobile() -> None:
    assert normalise_phone("0110 123456") == "+254110123456"


@pytest.mark.parametrize(
    "raw", ["0722 12", "+255712345678", "0612345678", "", "07123456789", "abc"]
)
def test_non_kenyan_numbers_name_the_field(raw: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        normalise_phone(raw, field="customers[3].phone_number")
    assert caught.value.field == "customers[3].phone_number"
    assert f'"{raw}"' in str(caught.value)


def test_mask_phone_keeps_prefix_and_last_two() -> None:
    assert mask_phone("+254712345601") == "+2547******01"


def test_provider_cost_is_exact() -> None:
    assert parse_provider_cost("KES 0.8000") == ("KES", 800_000)
    assert parse_provider_cost("0") == ("KES", 0)
    assert format_micros(800_000) == "0.8000"


def test_amount_finer_than_micros_is_rejected() -> None:
    with pytest.raises(InvalidArgument):
        to_micros("0.0000001")


def test_page_token_round_trips() -> None:
    assert decode_token(encode_token(41)) == 41
    assert decode_token("") is None


def test_forged_page_token_is_rejected() -> None:
    with pytest.raises(InvalidArgument) as caught:
        decode_token("not-a-token")
    assert caught.value.field == "page_token"


def test_page_size_out_of_range_names_limit() -> None:
    assert page_size(0, default=50) == 50
    with pytest.raises(InvalidArgument, match="1 to 1000"):
        page_size(5000)


def test_offset_forms_of_one_instant_are_equal() -> None:
    nairobi = parse_iso("1997-09-30T12:00:00+03:00", "occur_time")
    utc = parse_iso("1997-09-30T09:00:00Z", "occur_time")
    assert nairobi == utc
    assert nairobi.tzinfo == dt.UTC


def test_time_without_offset_is_rejected() -> None:
    with pytest.raises(InvalidArgument, match="no UTC offset"):
        parse_iso("1997-09-30T12:00:00", "occur_time")


@pytest.mark.parametrize("raw", ["Infinity", "NaN", "-inf"])
def test_non_finite_amount_is_rejected(raw: str) -> None:
    with pytest.raises(InvalidArgument, match="not a finite amount"):
        to_micros(raw)


def test_page_token_keeps_its_sort_value() -> None:
    assert decode_position(encode_token(41, 0.8731)) == (41, 0.8731)
    assert decode_position(encode_token(41)) == (41, None)
    assert decode_token(encode_token(41, 0.5)) == 41


@pytest.mark.parametrize(
    "fields", [{"after": -1}, {"after": True}, {"after": 3, "value": "high"}, [1]]
)
def test_page_token_with_bad_fields_is_rejected(fields: object) -> None:
    token = base64.urlsafe_b64encode(json.dumps(fields).encode()).decode()
    with pytest.raises(InvalidArgument) as caught:
        decode_position(token)
    assert caught.value.field == "page_token"
