"""Voice campaigns delivered by the worker through the emulator's voice API:
consent for voice re-checked before the call, the template read to the
customer, the call's end recorded in the ledger, and one call per customer."""

from __future__ import annotations

import asyncio
from collections import Counter
from urllib.parse import urlencode

import pytest
import retain_emulator.voice
from comms_doubles import TEMPLATES, phone_of
from comms_harness import SECRET, Stack
from google.api import httpbody_pb2
from retain.comms.v1 import comms_pb2
from retain.type.v1 import channel_pb2
from retain_comms.queue import SendQueue
from retain_comms.voice import say
from retain_runtime.money import MICROS

VOICE = channel_pb2.CHANNEL_VOICE
DELIVERED = comms_pb2.MESSAGE_STATE_DELIVERED
FAILED = comms_pb2.MESSAGE_STATE_FAILED
SUPPRESSED = comms_pb2.MESSAGE_STATE_SUPPRESSED
PENDING = comms_pb2.MESSAGE_STATE_PENDING
# The emulator's price of one call, "3.0000" KES.
CALL_PRICE_MICROS = 3 * MICROS


def add_voice_customers(stack: Stack, ids: range) -> None:
    stack.add_customers(ids)
    stack.user.grant_voice(ids)


async def test_voice_campaign_calls_and_records_outcome(stack: Stack) -> None:
    add_voice_customers(stack, range(1, 4))
    stack.emulator.set_call_unanswered(phone_of(3))
    stack.start_worker()

    campaign = await stack.launch(holdout_share=0.0, channel=VOICE)
    messages = await stack.settled(campaign.campaign_id)

    states = {m.customer_id: m.state for m in messages}
    assert states == {1: DELIVERED, 2: DELIVERED, 3: FAILED}
    by_customer = {m.customer_id: m for m in messages}
    assert by_customer[1].cost.amount_micros == CALL_PRICE_MICROS
    assert by_customer[3].reason == "NO_ANSWER"
    assert by_customer[3].cost.amount_micros == 0
    calls = stack.emulator.voice_calls()
    assert {c["sessionId"] for c in calls} == {m.provider_message_id for m in messages}
    assert stack.emulator.messages() == []


async def test_call_ended_before_recorded_applies_later(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The call's end is reported before the worker places the call, so its
    # report waits until the worker records the session id.
    session_id = "ATVId_ended_early"
    monkeypatch.setattr(retain_emulator.voice, "new_session_id", lambda: session_id)
    stack.emulator.set_voice_callback_url(None)
    add_voice_customers(stack, range(1, 2))
    ended = {
        "isActive": "0",
        "sessionId": session_id,
        "direction": "Outbound",
        "callerNumber": phone_of(1),
        "durationInSeconds": "12",
        "currencyCode": "KES",
        "amount": "3.0000",
    }
    await stack.comms.ReceiveVoiceEvent(
        comms_pb2.ReceiveVoiceEventRequest(
            secret=SECRET,
            http_body=httpbody_pb2.HttpBody(
                content_type="application/x-www-form-urlencoded",
                data=urlencode(ended).encode(),
            ),
        ),
        timeout=5,
    )
    stack.start_worker()

    campaign = await stack.launch(holdout_share=0.0, channel=VOICE)
    (message,) = await stack.settled(campaign.campaign_id)

    assert message.provider_message_id == session_id
    assert message.state == DELIVERED
    assert message.cost.amount_micros == CALL_PRICE_MICROS
    assert len(stack.emulator.voice_calls()) == 1


async def test_voice_campaign_reads_template_with_name(stack: Stack) -> None:
    add_voice_customers(stack, range(1, 2))
    stack.start_worker()

    campaign = await stack.launch(holdout_share=0.0, channel=VOICE)
    await stack.settled(campaign.campaign_id)

    [call] = stack.emulator.voice_calls()
    assert call["response"] == say(TEMPLATES["en"].format(first_name="Amina"))


async def test_voice_campaign_calls_each_customer_once(stack: Stack) -> None:
    add_voice_customers(stack, range(1, 6))
    campaign = await stack.launch(holdout_share=0.0, channel=VOICE)
    pending = await stack.messages(campaign.campaign_id, PENDING)
    ids = [m.message_id for m in pending]
    queue = SendQueue(stack.service.broker, 2)

    await asyncio.to_thread(queue.enqueue, ids * 3)
    stack.start_worker()
    await stack.settled(campaign.campaign_id)

    assert stack.emulator.wait_for_voice_calls(5)
    called = Counter(c["phoneNumber"] for c in stack.emulator.voice_calls())
    assert called == {phone_of(c): 1 for c in range(1, 6)}


async def test_voice_consent_withdrawn_after_launch_stops_call(
    stack: Stack,
) -> None:
    add_voice_customers(stack, range(1, 3))
    campaign = await stack.launch(holdout_share=0.0, channel=VOICE)
    stack.user.withdraw_voice(2)

    stack.start_worker()
    messages = await stack.settled(campaign.campaign_id)

    by_customer = {m.customer_id: m for m in messages}
    assert by_customer[2].state == SUPPRESSED
    assert by_customer[2].reason == "no consent"
    assert by_customer[1].state == DELIVERED
    called = [c["phoneNumber"] for c in stack.emulator.voice_calls()]
    assert called == [phone_of(1)]


async def test_voice_campaign_reserves_call_price(stack: Stack) -> None:
    add_voice_customers(stack, range(1, 3))

    campaign = await stack.launch(holdout_share=0.0, channel=VOICE)

    messages = await stack.messages(campaign.campaign_id)
    estimates = {m.estimated_cost.amount_micros for m in messages}
    assert estimates == {stack.settings.at_voice_call_price_micros}
