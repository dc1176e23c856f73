"""Bulk opt-outs, the USSD exit survey and voice calls, through the Envoy
stand-in as Africa's Talking reaches them."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from urllib.parse import urlencode

import grpc
import httpx
import pytest
from comms_doubles import FakeCustomer, phone_of
from comms_harness import AT_VOICE_NUMBER, MORNING, SECRET, Stack
from google.api import httpbody_pb2
from retain.comms.v1 import comms_pb2, comms_pb2_grpc
from retain.events.v1 import events_pb2
from retain.type.v1 import channel_pb2
from retain.user.v1 import user_pb2
from retain_comms.africastalking import Outcome, ProviderRejected
from retain_comms.ussd import SESSION_TTL_SECONDS
from retain_comms.voice import EMPTY_RESPONSE, MESSAGES, say
from retain_emulator import UssdDialer
from retain_runtime.certs import CertPaths
from retain_runtime.credentials import aio_channel

FORM = "application/x-www-form-urlencoded"
FIRST_QUESTION = {
    "en": "CON Why did you stop travelling with us?\n1. Price\n",
    "sw": "CON Kwa nini uliacha kusafiri nasi?\n1. Bei\n",
}
SECOND_QUESTION = {
    "en": "CON How satisfied were you with our service?",
    "sw": "CON Uliridhika kiasi gani na huduma yetu?",
}
THANKS = {"en": "END Thank you for your answers.", "sw": "END Asante kwa majibu yako."}
LANGUAGES = {"en": user_pb2.LANGUAGE_EN, "sw": user_pb2.LANGUAGE_SW}


async def post(stack: Stack, route: str, form: dict[str, str], secret: str = SECRET):
    """POST a form to a callback route the way AT does, through the bridge."""
    async with httpx.AsyncClient(timeout=5) as client:
        return await client.post(stack.bridge.url(route, secret), data=form)


def dialler(stack: Stack, customer_id: int, session_id: str) -> UssdDialer:
    return UssdDialer(
        stack.bridge.url("/ussd"), phone_of(customer_id), session_id=session_id
    )


async def ussd_keys(stack: Stack) -> list[bytes]:
    namespace = stack.settings.queue_namespace
    return await stack.service.ussd_redis.keys(f"{namespace}:ussd:*")


def survey_events(stack: Stack) -> list[events_pb2.Event]:
    return sorted(stack.events.ingested.values(), key=lambda e: e.event_id)


# Bulk opt-out


async def test_bulk_opt_out_records_provider_opt_out(stack: Stack) -> None:
    stack.add_customers([1])
    form = {"senderId": "SafiriRide", "phoneNumber": phone_of(1)}

    first = await post(stack, "/optout", form)
    repeat = await post(stack, "/optout", form)

    assert first.status_code == 200
    assert repeat.status_code == 200
    opt_out = stack.user.opt_outs[0]
    assert opt_out.phone_number == phone_of(1)
    assert opt_out.channel == channel_pb2.CHANNEL_SMS
    assert opt_out.source == user_pb2.CONSENT_SOURCE_PROVIDER_OPT_OUT
    assert "SafiriRide" in opt_out.evidence
    assert 1 not in stack.user.consented


async def test_bulk_opt_out_in_local_form_is_normalised(stack: Stack) -> None:
    local = "0" + phone_of(1).removeprefix("+254")

    response = await post(
        stack, "/optout", {"senderId": "SafiriRide", "phoneNumber": local}
    )

    assert response.status_code == 200
    assert [o.phone_number for o in stack.user.opt_outs] == [phone_of(1)]


async def test_bulk_opt_out_with_unreadable_number_is_dropped(stack: Stack) -> None:
    response = await post(
        stack, "/optout", {"senderId": "SafiriRide", "phoneNumber": "12"}
    )

    assert response.status_code == 200
    assert stack.user.opt_outs == []


async def test_bulk_opt_out_suppresses_later_send(stack: Stack) -> None:
    stack.add_customers(range(1, 4))
    await post(stack, "/optout", {"senderId": "SafiriRide", "phoneNumber": phone_of(2)})
    stack.start_worker()

    campaign = await stack.launch(holdout_share=0.0)
    messages = await stack.settled(campaign.campaign_id)

    assert campaign.counts.no_consent_count == 1
    assert {m.customer_id for m in messages} == {1, 3}
    assert phone_of(2) not in stack.emulator.receive_counts()


# The callback secret


@pytest.mark.parametrize("secret", ["wrong-secret", ""], ids=["wrong", "missing"])
async def test_wrong_secret_changes_nothing(stack: Stack, secret: str) -> None:
    stack.add_customers([1])
    phone = phone_of(1)
    ussd = {"sessionId": "ATUid_1", "phoneNumber": phone, "text": ""}
    voice = {"sessionId": "ATVId_1", "isActive": "1", "callerNumber": phone}

    statuses = [
        (await post(stack, "/optout", {"phoneNumber": phone}, secret)).status_code,
        (await post(stack, "/ussd", ussd, secret)).status_code,
        (await post(stack, "/ussd", {**ussd, "text": "1"}, secret)).status_code,
        (await post(stack, "/voice", voice, secret)).status_code,
    ]

    assert statuses == [403, 403, 403, 403]
    assert stack.user.opt_outs == []
    assert 1 in stack.user.consented
    assert stack.events.ingested == {}
    assert await ussd_keys(stack) == []


async def test_wrong_secret_returns_no_voice_xml(stack: Stack) -> None:
    response = await post(
        stack, "/voice", {"isActive": "1", "callerNumber": phone_of(1)}, "guess"
    )

    assert response.status_code == 403
    assert response.content == b""


# The USSD survey


@pytest.mark.parametrize("language", ["en", "sw"])
async def test_ussd_survey_stores_answers_as_events(
    stack: Stack, language: str
) -> None:
    stack.user.add(FakeCustomer(1, language=LANGUAGES[language]))

    with dialler(stack, 1, "ATUid_survey") as session:
        replies = await asyncio.to_thread(session.play, ["2", "4"])

    first, second, last = replies
    assert first.startswith(FIRST_QUESTION[language])
    assert second.startswith(SECOND_QUESTION[language])
    assert last == THANKS[language]
    reason, satisfaction = survey_events(stack)
    assert reason.event_id == "ussd-ATUid_survey-1-1"
    assert reason.customer_id == 1
    assert reason.type == events_pb2.EVENT_TYPE_SURVEY_ANSWER
    assert dict(reason.attributes) == {"question": "stop_reason", "answer": "safety"}
    assert satisfaction.event_id == "ussd-ATUid_survey-2-1"
    assert dict(satisfaction.attributes) == {
        "question": "satisfaction",
        "answer": "4",
    }
    occur_time = satisfaction.occur_time.ToDatetime(tzinfo=dt.UTC)
    assert occur_time.date() == MORNING.date()


async def test_ussd_invalid_answer_asks_again(stack: Stack) -> None:
    stack.add_customers([1])

    with dialler(stack, 1, "ATUid_retry") as session:
        await asyncio.to_thread(session.dial)
        wrong_reason = await asyncio.to_thread(session.send, "9")
        second = await asyncio.to_thread(session.send, "1")
        wrong_score = await asyncio.to_thread(session.send, "six")
        last = await asyncio.to_thread(session.send, "5")

    assert wrong_reason.startswith("CON Invalid choice, please try again.\n")
    assert FIRST_QUESTION["en"].removeprefix("CON ") in wrong_reason
    assert second.startswith(SECOND_QUESTION["en"])
    assert wrong_score.startswith("CON Invalid choice")
    assert SECOND_QUESTION["en"].removeprefix("CON ") in wrong_score
    assert last == THANKS["en"]
    answers = [dict(e.attributes)["answer"] for e in survey_events(stack)]
    assert answers == ["price", "5"]


async def test_ussd_repeated_step_is_idempotent(stack: Stack) -> None:
    stack.add_customers([1])

    with dialler(stack, 1, "ATUid_repeat") as session:
        await asyncio.to_thread(session.dial)
        second = await asyncio.to_thread(session.send, "3")
        second_again = await asyncio.to_thread(session.repeat)
        events_after_repeat = len(stack.events.ingested)
        last = await asyncio.to_thread(session.send, "2")
        last_again = await asyncio.to_thread(session.repeat)

    assert second_again == second
    assert events_after_repeat == 1
    assert last_again == last == THANKS["en"]
    assert len(stack.events.ingested) == 2


async def test_ussd_retry_after_lost_state_stores_nothing_twice(
    stack: Stack,
) -> None:
    stack.add_customers([1])
    with dialler(stack, 1, "ATUid_lost") as session:
        await asyncio.to_thread(session.play, ["1", "3"])
    await stack.service.ussd_redis.delete(*await ussd_keys(stack))

    form = {"sessionId": "ATUid_lost", "phoneNumber": phone_of(1), "text": "1*3"}
    response = await post(stack, "/ussd", form)

    assert response.text == THANKS["en"]
    assert len(stack.events.ingested) == 2


async def test_ussd_state_expires(stack: Stack) -> None:
    stack.add_customers([1])

    with dialler(stack, 1, "ATUid_ttl") as session:
        await asyncio.to_thread(session.dial)

    [key] = await ussd_keys(stack)
    ttl = await stack.service.ussd_redis.ttl(key)
    assert 0 < ttl <= SESSION_TTL_SECONDS


async def test_ussd_reply_is_plain_text(stack: Stack) -> None:
    stack.add_customers([1])
    form = {"sessionId": "ATUid_plain", "phoneNumber": phone_of(1), "text": ""}

    response = await post(stack, "/ussd", form)

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain"
    assert response.text.startswith("CON ")


async def test_ussd_health_customer_is_asked_about_visits(stack: Stack) -> None:
    stack.user.add(FakeCustomer(1, vertical=user_pb2.VERTICAL_HEALTH))

    with dialler(stack, 1, "ATUid_health") as session:
        first = await asyncio.to_thread(session.dial)

    assert first.startswith("CON Why did you stop visiting us?")


async def test_ussd_unknown_number_ends_without_events(stack: Stack) -> None:
    with dialler(stack, 77, "ATUid_stranger") as session:
        replies = await asyncio.to_thread(session.play, ["1", "1"])

    assert replies == ["END Sorry, this survey is for our customers only."]
    assert stack.events.ingested == {}


async def test_ussd_without_session_id_ends(stack: Stack) -> None:
    response = await post(stack, "/ussd", {"phoneNumber": phone_of(1), "text": ""})

    assert response.status_code == 200
    assert response.text.startswith("END ")
    assert await ussd_keys(stack) == []


# Voice


async def voice_event(stack: Stack, **fields: str) -> httpbody_pb2.HttpBody:
    return await stack.comms.ReceiveVoiceEvent(
        comms_pb2.ReceiveVoiceEventRequest(
            secret=SECRET,
            http_body=httpbody_pb2.HttpBody(
                content_type=FORM, data=urlencode(fields).encode()
            ),
        ),
        timeout=5,
    )


@pytest.mark.parametrize("language", ["en", "sw"])
async def test_voice_call_speaks_customer_language(stack: Stack, language: str) -> None:
    stack.user.add(FakeCustomer(1, language=LANGUAGES[language]))

    result = await stack.service.provider.call(phone_of(1))

    assert result.outcome is Outcome.SUBMITTED
    assert result.session_id.startswith("ATVId_")
    assert await asyncio.to_thread(stack.emulator.wait_for_voice_calls, 10)
    [call] = stack.emulator.voice_calls()
    assert call["sessionId"] == result.session_id
    assert call["from"] == AT_VOICE_NUMBER
    assert call["outcome"] == "answered"
    assert call["responseContentType"] == "application/xml"
    assert call["response"] == say(MESSAGES[language])
    assert call["response"].startswith('<?xml version="1.0" encoding="UTF-8"?>')
    assert '<Say voice="en-US-Standard-C">' in call["response"]


async def test_voice_unknown_caller_hears_english(stack: Stack) -> None:
    reply = await voice_event(
        stack, sessionId="ATVId_2", isActive="1", callerNumber=phone_of(5)
    )

    assert reply.content_type == "application/xml"
    assert reply.data.decode() == say(MESSAGES["en"])


async def test_voice_final_event_gets_empty_response(stack: Stack) -> None:
    reply = await voice_event(
        stack,
        sessionId="ATVId_3",
        isActive="0",
        callerNumber=phone_of(1),
        durationInSeconds="12",
        currencyCode="KES",
        amount="3.0000",
    )

    assert reply.data.decode() == EMPTY_RESPONSE


def test_say_escapes_text() -> None:
    xml = say("Tom & Jerry <3")

    assert "Tom &amp; Jerry &lt;3" in xml


async def test_voice_call_to_invalid_number_fails(stack: Stack) -> None:
    result = await stack.service.provider.call("+1555")

    assert result.outcome is Outcome.FAILED
    assert result.provider_status == "InvalidPhoneNumber"


async def test_voice_call_retries_server_error(stack: Stack) -> None:
    stack.user.add(FakeCustomer(1))
    stack.emulator.fail_next_requests(1, 503, scope="voice")

    result = await stack.service.provider.call(phone_of(1))

    assert result.outcome is Outcome.SUBMITTED
    assert len(stack.emulator.voice_calls()) == 1


async def test_voice_call_without_voice_number_is_rejected(stack: Stack) -> None:
    provider = stack.service.provider
    number, provider.voice_number = provider.voice_number, ""
    try:
        with pytest.raises(ProviderRejected) as caught:
            await provider.call(phone_of(1))
    finally:
        provider.voice_number = number

    assert "AT_VOICE_NUMBER" in str(caught.value)
    assert stack.emulator.voice_calls() == []


async def test_stranger_cannot_post_callbacks(stack: Stack, cert_dir: Path) -> None:
    channel = aio_channel(
        f"127.0.0.1:{stack.service.port}", CertPaths.in_directory(cert_dir, "stranger")
    )
    stranger = comms_pb2_grpc.CommsServiceStub(channel)
    try:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stranger.ReceiveUssd(
                comms_pb2.ReceiveUssdRequest(secret=SECRET), timeout=5
            )
    finally:
        await channel.close()

    assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED
