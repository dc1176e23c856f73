"""How a claimed batch becomes provider requests, and how a reply that lists
several recipients becomes their verdicts."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest
from retain.type.v1 import channel_pb2
from retain.user.v1 import user_pb2
from retain_comms.africastalking import (
    Outcome,
    Reply,
    _parse_call_reply,
    _parse_send_reply,
)
from retain_comms.sending import Kind, plan_requests
from retain_comms.states import MessageState

TEMPLATE = "Hi {first_name}, we miss you."
NUMBER = "+254700000001"
OTHER = "+254700000002"


def row(message_id: int, customer_id: int, **values: Any) -> Any:
    fields = {
        "message_id": message_id,
        "customer_id": customer_id,
        "campaign_id": 1,
        "channel": channel_pb2.CHANNEL_SMS,
        "template": TEMPLATE,
        "language": "en",
        **values,
    }
    return SimpleNamespace(**fields)


def contact(customer_id: int, phone: str, **values: Any) -> user_pb2.Contact:
    return user_pb2.Contact(
        customer_id=customer_id, phone_number=phone, first_name="Amina", **values
    )


def test_same_text_shares_one_request() -> None:
    rows = [row(1, 1), row(2, 2)]
    contacts = {1: contact(1, NUMBER), 2: contact(2, OTHER)}

    plan = plan_requests(rows, contacts, live_account=False)

    [request] = plan.requests
    assert request.kind is Kind.SMS
    assert request.text == "Hi Amina, we miss you."
    assert set(request.messages) == {NUMBER, OTHER}
    assert plan.outcomes == []


def test_shared_number_goes_into_separate_requests() -> None:
    rows = [row(1, 1), row(2, 2)]
    contacts = {1: contact(1, NUMBER), 2: contact(2, NUMBER)}

    plan = plan_requests(rows, contacts, live_account=False)

    assert len(plan.requests) == 2
    assert [list(r.messages) for r in plan.requests] == [[NUMBER], [NUMBER]]


def test_distinct_names_make_distinct_requests() -> None:
    rows = [row(1, 1), row(2, 2)]
    contacts = {1: contact(1, NUMBER), 2: contact(2, OTHER)}
    contacts[2].first_name = "Baraka"

    plan = plan_requests(rows, contacts, live_account=False)

    assert sorted(r.text for r in plan.requests) == [
        "Hi Amina, we miss you.",
        "Hi Baraka, we miss you.",
    ]


def test_missing_consent_and_fictitious_number_are_suppressed() -> None:
    rows = [row(1, 1), row(2, 2)]
    contacts = {2: contact(2, OTHER, fictitious=True)}

    plan = plan_requests(rows, contacts, live_account=True)

    assert plan.requests == []
    reasons = {o.message_id: o.reason for o in plan.outcomes}
    assert reasons == {1: "no consent", 2: "fictitious number on a live account"}
    assert {o.state for o in plan.outcomes} == {MessageState.SUPPRESSED}


def test_voice_messages_share_one_call_request() -> None:
    voice = channel_pb2.CHANNEL_VOICE
    rows = [row(1, 1, channel=voice), row(2, 2, channel=voice)]
    contacts = {1: contact(1, NUMBER), 2: contact(2, OTHER)}

    plan = plan_requests(rows, contacts, live_account=False)

    [request] = plan.requests
    assert request.kind is Kind.VOICE
    assert set(request.messages) == {NUMBER, OTHER}


def test_number_missing_from_reply_is_unknown() -> None:
    recipient = {
        "number": NUMBER,
        "status": "Success",
        "cost": "KES 0.8000",
        "messageId": "ATXid_1",
    }
    body = {"SMSMessageData": {"Message": "Sent to 1/2", "Recipients": [recipient]}}
    response = Reply(201, json.dumps(body).encode())

    verdicts = _parse_send_reply(response, [NUMBER, OTHER])

    assert verdicts[NUMBER].outcome is Outcome.SUBMITTED
    assert verdicts[NUMBER].cost_micros == 800_000
    assert verdicts[OTHER].outcome is Outcome.UNKNOWN


@pytest.mark.parametrize(
    "body",
    [
        b'{"SMSMessageData": {}}',
        b'{"SMSMessageData": {"Message": "", "Recipients": [{"number": "x"}]}}',
        b"[" * 100_000 + b"]" * 100_000,
    ],
    ids=["no-recipients", "no-status", "nested"],
)
def test_reply_without_verdict_is_unknown(body: bytes) -> None:
    verdicts = _parse_send_reply(Reply(201, body), [NUMBER])

    assert verdicts[NUMBER].outcome is Outcome.UNKNOWN


def test_number_listed_twice_is_unknown() -> None:
    accepted = {
        "number": NUMBER,
        "status": "Success",
        "cost": "KES 0.8000",
        "messageId": "ATXid_1",
    }
    short_of_balance = {"number": NUMBER, "status": "InsufficientBalance", "cost": "0"}
    other = {**accepted, "number": OTHER, "messageId": "ATXid_2"}
    data = {"Message": "Sent to 2/3", "Recipients": [accepted, short_of_balance, other]}
    body = json.dumps({"SMSMessageData": data}).encode()

    verdicts = _parse_send_reply(Reply(201, body), [NUMBER, OTHER])

    assert verdicts[NUMBER].outcome is Outcome.UNKNOWN
    assert verdicts[OTHER].outcome is Outcome.SUBMITTED


def test_call_reply_without_entries_is_unknown() -> None:
    verdicts = _parse_call_reply(Reply(201, b"{}"), [NUMBER])

    assert verdicts[NUMBER].outcome is Outcome.UNKNOWN
