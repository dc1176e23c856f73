"""PreviewMessages and SendTestMessage: the texts a launch would send, and one
of them sent to the calling admin's own phone, apart from campaign counts."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa
from comms_doubles import TEMPLATES, FakeCustomer, phone_of
from comms_harness import Stack, eventually
from retain.comms.v1 import comms_pb2, comms_pb2_grpc
from retain.user.v1 import user_pb2
from retain_comms.africastalking import Outcome, SendResult
from retain_comms.campaigns import Campaigns
from retain_comms.ledger import Ledger
from retain_comms.previews import Previews
from retain_comms.selection import Selector
from retain_comms.states import MessageState
from retain_comms.store import Store
from retain_comms.tables import test_messages
from retain_runtime.callers import SUBJECT_HEADER, Caller, current_caller
from retain_runtime.certs import CertPaths
from retain_runtime.credentials import aio_channel
from retain_runtime.money import kes

ADMIN = "ann@example.com"
ADMIN_PHONE = "+254799000001"
AS_ADMIN = ((SUBJECT_HEADER, ADMIN),)
# The default AT_UNIT_PRICE_KES of 0.8, in micros.
UNIT_PRICE = 800_000
# A Swahili template of 2 parts once {first_name} takes its maximum of 20
# characters (169 characters), but of 1 part with "Amina" (154).
LONG_SW = "Habari {first_name}, " + "x" * 140
# An English template that needs UCS-2 for its emoji.
EMOJI_EN = "Karibu tena {first_name} \U0001f60a"


@pytest.fixture
async def envoy(
    stack: Stack, cert_dir: Path
) -> AsyncIterator[comms_pb2_grpc.CommsServiceStub]:
    channel = aio_channel(
        f"127.0.0.1:{stack.service.port}", CertPaths.in_directory(cert_dir, "envoy")
    )
    yield comms_pb2_grpc.CommsServiceStub(channel)
    await channel.close()


@pytest.fixture
def templates() -> Iterator[dict[str, str]]:
    """Let a test change the texts the inference double writes."""
    saved = dict(TEMPLATES)
    yield TEMPLATES
    TEMPLATES.clear()
    TEMPLATES.update(saved)


def add_readers(stack: Stack, english: range, swahili: range) -> None:
    for customer_id in english:
        stack.user.add(FakeCustomer(customer_id))
        stack.inference.scores[customer_id] = 0.9
    for customer_id in swahili:
        stack.user.add(FakeCustomer(customer_id, language=user_pb2.LANGUAGE_SW))
        stack.inference.scores[customer_id] = 0.9


async def previews_of(
    stack: Stack, campaign_id: int
) -> dict[str, comms_pb2.MessagePreview]:
    reply = await stack.comms.PreviewMessages(
        comms_pb2.PreviewMessagesRequest(campaign_id=campaign_id), timeout=10
    )
    return {p.language: p for p in reply.previews}


async def stored_test_messages(stack: Stack) -> list[sa.Row]:
    async with stack.service.engine.connect() as conn:
        query = sa.select(test_messages).order_by(test_messages.c.test_message_id)
        return list((await conn.execute(query)).all())


async def test_preview_fills_sample_name_per_language(stack: Stack) -> None:
    add_readers(stack, range(1, 4), range(4, 6))
    campaign = await stack.create()

    previews = await previews_of(stack, campaign.campaign_id)

    assert sorted(previews) == ["en", "sw"]
    assert previews["en"].text == TEMPLATES["en"].replace("{first_name}", "Amina")
    assert previews["sw"].text == TEMPLATES["sw"].replace("{first_name}", "Amina")
    assert previews["en"].segment_key == "en-transport"
    assert previews["sw"].segment_key == "sw-transport"
    assert previews["en"].encoding == comms_pb2.ENCODING_GSM_7
    assert previews["en"].segments == 1
    assert previews["en"].unit_cost == kes(UNIT_PRICE)


async def test_preview_counts_parts_at_longest_name(
    stack: Stack, templates: dict[str, str]
) -> None:
    templates.update(en=EMOJI_EN, sw=LONG_SW)
    add_readers(stack, range(1, 3), range(3, 5))
    campaign = await stack.create()

    previews = await previews_of(stack, campaign.campaign_id)

    longest = len(LONG_SW.replace("{first_name}", "W" * 20))
    assert longest == 169
    assert len(previews["sw"].text) == 154
    assert previews["sw"].segments == math.ceil(longest / 153)
    assert previews["sw"].unit_cost == kes(2 * UNIT_PRICE)
    assert previews["en"].encoding == comms_pb2.ENCODING_UCS_2
    assert previews["en"].segments == 1
    assert previews["en"].unit_cost == kes(UNIT_PRICE)


async def test_preview_changes_nothing(stack: Stack) -> None:
    add_readers(stack, range(1, 4), range(0))
    campaign = await stack.create()

    await previews_of(stack, campaign.campaign_id)

    assert await stack.messages(campaign.campaign_id) == []
    reply = await stack.comms.GetCampaign(
        comms_pb2.GetCampaignRequest(campaign_id=campaign.campaign_id), timeout=5
    )
    assert reply.campaign.status == comms_pb2.CAMPAIGN_STATUS_DRAFT
    assert reply.campaign.counts == comms_pb2.CampaignCounts()


async def test_preview_writes_language_nobody_reads(stack: Stack) -> None:
    add_readers(stack, range(1, 4), range(0))
    campaign = await stack.create()

    previews = await previews_of(stack, campaign.campaign_id)

    assert previews["sw"].segment_key == "sw-transport"
    assert previews["sw"].text == TEMPLATES["sw"].replace("{first_name}", "Amina")
    stand_in = stack.inference.compose_requests[-1]
    assert [s.segment_key for s in stand_in.segments] == ["sw-transport"]
    assert list(stand_in.segments[0].reason_codes) == []


async def test_preview_after_launch_shows_ledger_templates(stack: Stack) -> None:
    add_readers(stack, range(1, 3), range(3, 4))
    campaign = await stack.launch(holdout_share=0.0)
    compose_calls = len(stack.inference.compose_requests)

    previews = await previews_of(stack, campaign.campaign_id)

    assert sorted(previews) == ["en", "sw"]
    assert previews["sw"].text == TEMPLATES["sw"].replace("{first_name}", "Amina")
    assert previews["sw"].segment_key == ""
    assert len(stack.inference.compose_requests) == compose_calls


async def test_preview_of_unknown_campaign_not_found(stack: Stack) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stack.comms.PreviewMessages(
            comms_pb2.PreviewMessagesRequest(campaign_id=999), timeout=5
        )

    assert caught.value.code() is grpc.StatusCode.NOT_FOUND


async def test_test_message_reaches_admin_phone_only(
    stack: Stack, envoy: comms_pb2_grpc.CommsServiceStub
) -> None:
    stack.user.admin_phones[ADMIN] = ADMIN_PHONE
    add_readers(stack, range(1, 4), range(4, 5))
    campaign = await stack.create()

    reply = await envoy.SendTestMessage(
        comms_pb2.SendTestMessageRequest(
            campaign_id=campaign.campaign_id, language="sw"
        ),
        metadata=AS_ADMIN,
        timeout=10,
    )

    assert reply.test_message_id > 0
    assert reply.message.state == comms_pb2.MESSAGE_STATE_SUBMITTED
    assert reply.message.customer_id == 0
    assert reply.message.cost == kes(UNIT_PRICE)
    assert stack.emulator.receive_counts() == {ADMIN_PHONE: 1}
    [sent] = stack.emulator.messages()
    assert sent["message"] == TEMPLATES["sw"].replace("{first_name}", "Amina")


async def test_test_message_stays_out_of_campaign_stats(
    stack: Stack, envoy: comms_pb2_grpc.CommsServiceStub
) -> None:
    stack.user.admin_phones[ADMIN] = ADMIN_PHONE
    add_readers(stack, range(1, 3), range(0))
    campaign = await stack.create()

    await envoy.SendTestMessage(
        comms_pb2.SendTestMessageRequest(
            campaign_id=campaign.campaign_id, language="en"
        ),
        metadata=AS_ADMIN,
        timeout=10,
    )

    stats = await stack.comms.GetMessageStats(
        comms_pb2.GetMessageStatsRequest(campaign_id=campaign.campaign_id), timeout=5
    )
    assert list(stats.counts) == []
    assert stats.spend == kes(0)
    assert await stack.messages(campaign.campaign_id) == []


async def test_test_message_takes_delivery_report(
    stack: Stack, envoy: comms_pb2_grpc.CommsServiceStub
) -> None:
    stack.user.admin_phones[ADMIN] = ADMIN_PHONE
    add_readers(stack, range(1, 2), range(0))
    campaign = await stack.create()

    await envoy.SendTestMessage(
        comms_pb2.SendTestMessageRequest(
            campaign_id=campaign.campaign_id, language="en"
        ),
        metadata=AS_ADMIN,
        timeout=10,
    )

    async def delivered() -> list[sa.Row] | None:
        rows = await stored_test_messages(stack)
        return rows if rows[0].state == MessageState.DELIVERED else None

    [row] = await eventually(delivered)
    assert row.provider_status == "Success"
    assert row.admin_email == ADMIN
    assert row.phone_number_masked == "+2547******01"


async def test_test_message_without_subject_fails(stack: Stack) -> None:
    add_readers(stack, range(1, 2), range(0))
    campaign = await stack.create()

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stack.comms.SendTestMessage(
            comms_pb2.SendTestMessageRequest(
                campaign_id=campaign.campaign_id, language="en"
            ),
            timeout=10,
        )

    assert caught.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "subject" in (caught.value.details() or "")
    assert stack.emulator.messages() == []
    assert await stored_test_messages(stack) == []


async def test_test_message_for_unknown_admin_fails(
    stack: Stack, envoy: comms_pb2_grpc.CommsServiceStub
) -> None:
    add_readers(stack, range(1, 2), range(0))
    campaign = await stack.create()

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await envoy.SendTestMessage(
            comms_pb2.SendTestMessageRequest(
                campaign_id=campaign.campaign_id, language="en"
            ),
            metadata=AS_ADMIN,
            timeout=10,
        )

    assert caught.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert ADMIN in (caught.value.details() or "")
    assert stack.emulator.messages() == []


async def test_test_message_for_admin_without_phone_fails(
    stack: Stack, envoy: comms_pb2_grpc.CommsServiceStub
) -> None:
    stack.user.admin_phones[ADMIN] = ""
    add_readers(stack, range(1, 2), range(0))
    campaign = await stack.create()

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await envoy.SendTestMessage(
            comms_pb2.SendTestMessageRequest(
                campaign_id=campaign.campaign_id, language="en"
            ),
            metadata=AS_ADMIN,
            timeout=10,
        )

    assert caught.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "phone number" in (caught.value.details() or "")


@pytest.mark.parametrize("language", ["fr", "", "EN"])
async def test_test_message_rejects_unknown_language(
    stack: Stack, envoy: comms_pb2_grpc.CommsServiceStub, language: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await envoy.SendTestMessage(
            comms_pb2.SendTestMessageRequest(campaign_id=1, language=language),
            metadata=AS_ADMIN,
            timeout=5,
        )

    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "language" in (caught.value.details() or "")


class RecordingProvider:
    """Stands in for the AT client where no send may leave this process."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    async def send(self, phone_number: str, text: str) -> SendResult:
        self.sent.append((phone_number, text))
        return SendResult(Outcome.SUBMITTED, "Success", "ATXid_recorded", 800_000)


def live_previews(stack: Stack, provider: RecordingProvider) -> Previews:
    """Build Previews as server.start does, but for a live AT account."""
    engine = stack.service.engine
    store, ledger = Store(engine), Ledger(engine)
    selector = Selector(stack.service.peers, ledger, UNIT_PRICE)
    campaigns = Campaigns(store, ledger, selector, queue=None, clock=stack.clock)  # type: ignore[arg-type]
    return Previews(
        campaigns,
        selector,
        store,
        ledger,
        stack.service.peers,
        provider,  # type: ignore[arg-type]
        stack.clock,
        live_account=True,
    )


@pytest.mark.parametrize("fictitious", [True, False], ids=["fictitious", "real"])
async def test_live_account_never_gets_fictitious_number(
    stack: Stack, fictitious: bool
) -> None:
    # The admin's number belongs to customer 1 too, marked fictitious or not.
    stack.user.add(FakeCustomer(1, fictitious=fictitious))
    stack.inference.scores[1] = 0.9
    stack.user.admin_phones[ADMIN] = phone_of(1)
    campaign = await stack.create()
    provider = RecordingProvider()
    token = current_caller.set(Caller("spiffe://retain/envoy", ADMIN, "admin"))
    try:
        row = await live_previews(stack, provider).send_test(campaign.campaign_id, "en")
    finally:
        current_caller.reset(token)

    if fictitious:
        assert row.state == MessageState.SUPPRESSED
        assert row.reason == "fictitious number on a live account"
        assert provider.sent == []
    else:
        assert row.state == MessageState.SUBMITTED
        assert [phone for phone, _ in provider.sent] == [phone_of(1)]
