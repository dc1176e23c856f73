"""Launch: who gets a message, who is held out, and what the ledger records."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from comms_doubles import phone_of
from comms_harness import Stack, eventually
from retain.comms.v1 import comms_pb2
from retain.user.v1 import user_pb2
from retain_comms.queue import SendQueue
from retain_comms.selection import draw_holdout
from retain_comms.tables import assignments
from retain_runtime.clock import NAIROBI
from retain_runtime.money import kes


async def arms(stack: Stack, campaign_id: int) -> dict[int, tuple[str, str]]:
    """Return each assigned customer's (arm, drop_reason)."""
    query = sa.select(
        assignments.c.customer_id, assignments.c.arm, assignments.c.drop_reason
    ).where(assignments.c.campaign_id == campaign_id)
    async with stack.service.engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return {row.customer_id: (row.arm, row.drop_reason) for row in rows}


async def test_launch_sends_one_message_per_treated_customer(stack: Stack) -> None:
    stack.add_customers(range(1, 41))
    stack.start_worker()

    campaign = await stack.launch(holdout_share=0.25)
    messages = await stack.settled(campaign.campaign_id)

    treated = {
        c
        for c, (arm, _) in (await arms(stack, campaign.campaign_id)).items()
        if arm == "treatment"
    }
    assert campaign.counts.treated_count == 30
    assert {m.customer_id for m in messages} == treated
    assert len(messages) == len(treated)
    received = stack.emulator.receive_counts()
    assert received == {phone_of(c): 1 for c in treated}
    delivered = await eventually(
        lambda: _states_are(
            stack, campaign.campaign_id, comms_pb2.MESSAGE_STATE_DELIVERED
        )
    )
    assert len(delivered) == 30
    assert all(m.attempt_count == 1 for m in delivered)
    assert all(m.cost == kes(800_000) for m in delivered)


async def _states_are(
    stack: Stack, campaign_id: int, state: int
) -> list[comms_pb2.Message]:
    messages = await stack.messages(campaign_id)
    return messages if all(m.state == state for m in messages) else []


async def test_no_message_without_marketing_consent(stack: Stack) -> None:
    stack.add_customers(range(1, 21))
    stack.add_customers(range(21, 31), consent=False)
    stack.start_worker()

    campaign = await stack.launch(holdout_share=0.0)
    messages = await stack.settled(campaign.campaign_id)

    unconsented = set(range(21, 31))
    assert campaign.counts.no_consent_count == 10
    assert not unconsented & {m.customer_id for m in messages}
    assert not {phone_of(c) for c in unconsented} & set(stack.emulator.receive_counts())
    assert len(stack.emulator.messages()) == 20
    recorded = await arms(stack, campaign.campaign_id)
    assert all(recorded[c] == ("dropped", "no_consent") for c in unconsented)


async def test_consent_withdrawn_after_launch_stops_send(stack: Stack) -> None:
    stack.add_customers(range(1, 11))
    campaign = await stack.launch(holdout_share=0.0)
    stack.user.withdraw(4)

    stack.start_worker()
    messages = {m.customer_id: m for m in await stack.settled(campaign.campaign_id)}

    assert messages[4].state == comms_pb2.MESSAGE_STATE_SUPPRESSED
    assert messages[4].reason == "no consent"
    assert messages[4].attempt_count == 0
    assert phone_of(4) not in stack.emulator.receive_counts()
    assert len(stack.emulator.messages()) == 9


async def test_control_group_gets_nothing_and_has_configured_share(
    stack: Stack,
) -> None:
    stack.add_customers(range(1, 201))
    stack.start_worker()

    campaign = await stack.launch(holdout_share=0.3)
    await stack.settled(campaign.campaign_id)

    control = {
        c
        for c, (arm, _) in (await arms(stack, campaign.campaign_id)).items()
        if arm == "control"
    }
    assert abs(len(control) / 200 - 0.3) <= 0.01
    assert campaign.counts.held_out_count == len(control)
    assert not {phone_of(c) for c in control} & set(stack.emulator.receive_counts())
    assert len(stack.emulator.messages()) == 200 - len(control)


def test_holdout_draw_is_deterministic() -> None:
    ids = list(range(1, 1001))

    first = draw_holdout(ids, 0.2, seed=3)
    again = draw_holdout(list(reversed(ids)), 0.2, seed=3)
    other = draw_holdout(ids, 0.2, seed=4)

    assert first == again
    assert other != first
    assert len(first[1]) == 200


async def test_dry_run_is_repeatable_and_read_only(
    stack: Stack,
) -> None:
    stack.add_customers(range(1, 101))
    campaign = await stack.create(holdout_share=0.2)
    request = comms_pb2.DryRunCampaignRequest(
        campaign_id=campaign.campaign_id, sample_size=100
    )

    first = await stack.comms.DryRunCampaign(request, timeout=10)
    second = await stack.comms.DryRunCampaign(request, timeout=10)

    assert first == second
    assert first.counts.held_out_count == 20
    assert first.estimated_cost == kes(80 * 800_000)
    assert await stack.messages(campaign.campaign_id) == []
    assert await arms(stack, campaign.campaign_id) == {}


async def test_budget_stops_adding_messages(stack: Stack) -> None:
    stack.add_customers(range(1, 21))
    stack.start_worker()

    # Five messages of one part at KES 0.80 each fit in KES 4.00.
    campaign = await stack.launch(holdout_share=0.0, budget=kes(4_500_000))
    messages = await stack.settled(campaign.campaign_id)

    suppressed = [m for m in messages if m.state == comms_pb2.MESSAGE_STATE_SUPPRESSED]
    assert campaign.counts.treated_count == 5
    assert campaign.counts.suppressed_count == 15
    assert len(suppressed) == 15
    assert all(m.reason == "budget" for m in suppressed)
    assert len(stack.emulator.messages()) == 5


async def test_outside_send_window_defers_to_next_morning(stack: Stack) -> None:
    stack.add_customers(range(1, 6))
    stack.clock.set(dt.datetime(2024, 3, 5, 21, 0, tzinfo=NAIROBI))

    campaign = await stack.launch(holdout_share=0.0)
    messages = await stack.messages(campaign.campaign_id)

    next_morning = dt.datetime(2024, 3, 6, 7, 0, tzinfo=NAIROBI)
    assert all(m.state == comms_pb2.MESSAGE_STATE_DEFERRED for m in messages)
    assert all(m.not_before_time.ToDatetime(dt.UTC) == next_morning for m in messages)

    stack.start_worker()
    stack.clock.set(next_morning + dt.timedelta(minutes=1))
    settled = await stack.settled(campaign.campaign_id)
    assert {m.state for m in settled} <= {
        comms_pb2.MESSAGE_STATE_SUBMITTED,
        comms_pb2.MESSAGE_STATE_DELIVERED,
    }
    assert len(stack.emulator.messages()) == 5


async def test_language_picks_the_template(stack: Stack) -> None:
    stack.add_customers(range(1, 5))
    stack.user.customers[2].language = user_pb2.LANGUAGE_SW
    stack.start_worker()

    campaign = await stack.launch(holdout_share=0.0)
    await stack.settled(campaign.campaign_id)

    texts = {m["number"]: m["message"] for m in stack.emulator.messages()}
    assert texts[phone_of(2)].startswith("Habari Amina,")
    assert texts[phone_of(1)].startswith("Hi Amina,")
    assert len(stack.inference.compose_requests) == 1
    assert len(stack.inference.compose_requests[0].segments) == 2


async def test_launch_writes_twenty_thousand_customers(stack: Stack) -> None:
    stack.add_customers(range(1, 20_001))

    campaign = await stack.launch(holdout_share=0.1)

    assert campaign.counts.at_risk_count == 20_000
    assert campaign.counts.held_out_count == 2_000
    assert campaign.counts.treated_count == 18_000
    pending = await stack.messages(
        campaign.campaign_id, comms_pb2.MESSAGE_STATE_PENDING
    )
    assert len(pending) == 18_000
    queue = SendQueue(stack.service.broker, stack.settings.send_batch_size)
    assert queue.depth() == 18_000 // stack.settings.send_batch_size
