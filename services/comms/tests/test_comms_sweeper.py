"""The sweeper and the worker's claim: lost and duplicate queue messages,
stuck sends, missing reports and finished campaigns."""

from __future__ import annotations

import asyncio

from comms_doubles import phone_of
from comms_harness import Stack, eventually
from retain.comms.v1 import comms_pb2
from retain_comms.ledger import Ledger
from retain_comms.queue import QUEUE_NAME, SendQueue
from retain_comms.states import MessageState


async def campaign_status(stack: Stack, campaign_id: int) -> int:
    reply = await stack.comms.GetCampaign(
        comms_pb2.GetCampaignRequest(campaign_id=campaign_id), timeout=5
    )
    return reply.campaign.status


async def test_duplicate_queue_messages_send_once(stack: Stack) -> None:
    stack.add_customers(range(1, 6))
    campaign = await stack.launch(holdout_share=0.0)
    ids = [m.message_id for m in await stack.messages(campaign.campaign_id)]

    await asyncio.to_thread(SendQueue(stack.service.broker, 2).enqueue, ids * 3)
    stack.start_worker()
    await stack.settled(campaign.campaign_id)

    assert stack.emulator.receive_counts() == {phone_of(c): 1 for c in range(1, 6)}


async def test_lost_queue_messages_are_enqueued_again(stack: Stack) -> None:
    stack.add_customers(range(1, 4))
    campaign = await stack.launch(holdout_share=0.0)
    await asyncio.to_thread(stack.service.broker.flush, QUEUE_NAME)
    stack.start_worker()

    stack.clock.advance(stack.settings.requeue_after_seconds + 1)
    await stack.settled(campaign.campaign_id)

    assert stack.emulator.receive_counts() == {phone_of(c): 1 for c in range(1, 4)}


async def test_waiting_sends_are_not_enqueued_again(stack: Stack) -> None:
    stack.add_customers(range(1, 4))
    await stack.launch(holdout_share=0.0)
    queue = SendQueue(stack.service.broker, stack.settings.send_batch_size)

    # No worker runs, so the one queue message with the three sends waits in
    # the queue past the requeue time, which a re-enqueue would double.
    stack.clock.advance(stack.settings.requeue_after_seconds + 1)
    await stack.service.sweeper.sweep()

    assert await asyncio.to_thread(queue.waiting) == 1


async def test_missing_final_report_becomes_delivery_unknown(stack: Stack) -> None:
    stack.emulator.set_callback_url(None)
    stack.add_customers([1])
    stack.start_worker()
    campaign = await stack.launch(holdout_share=0.0)

    async def submitted() -> bool:
        (message,) = await stack.messages(campaign.campaign_id)
        return message.state == comms_pb2.MESSAGE_STATE_SUBMITTED

    await eventually(submitted)
    stack.clock.advance(stack.settings.report_window_seconds + 1)
    (message,) = await stack.settled(campaign.campaign_id)

    assert message.state == comms_pb2.MESSAGE_STATE_DELIVERY_UNKNOWN
    assert message.reason == "no final delivery report"


async def test_interrupted_send_becomes_delivery_unknown(stack: Stack) -> None:
    stack.add_customers([1])
    campaign = await stack.launch(holdout_share=0.0)
    (message,) = await stack.messages(campaign.campaign_id)
    # A worker that died after claiming the message leaves it SENDING.
    ledger = Ledger(stack.service.engine)
    await ledger.move(
        message.message_id,
        [MessageState.PENDING],
        MessageState.SENDING,
        stack.clock.now(),
    )

    stack.clock.advance(stack.settings.sending_timeout_seconds + 1)
    (stuck,) = await stack.settled(campaign.campaign_id)

    assert stuck.state == comms_pb2.MESSAGE_STATE_DELIVERY_UNKNOWN
    assert stuck.reason == "send interrupted"
    assert stack.emulator.messages() == []


async def test_campaign_finishes_when_nothing_waits(stack: Stack) -> None:
    stack.add_customers(range(1, 4))
    stack.start_worker()
    campaign = await stack.launch(holdout_share=0.0)

    async def finished() -> bool:
        status = await campaign_status(stack, campaign.campaign_id)
        return status == comms_pb2.CAMPAIGN_STATUS_FINISHED

    assert await eventually(finished)


async def test_unsent_messages_are_dropped_after_max_age(stack: Stack) -> None:
    stack.add_customers(range(1, 3))
    campaign = await stack.launch(holdout_share=0.0, max_age_hours=2)

    stack.clock.advance(2 * 3600 + 1)
    messages = await stack.settled(campaign.campaign_id)

    assert {m.state for m in messages} == {comms_pb2.MESSAGE_STATE_DROPPED}
    assert stack.emulator.messages() == []


async def test_report_left_unapplied_is_applied_late(stack: Stack) -> None:
    stack.emulator.set_callback_url(None)
    stack.add_customers([1])
    stack.start_worker()
    campaign = await stack.launch(holdout_share=0.0)

    async def submitted() -> comms_pb2.Message | None:
        (message,) = await stack.messages(campaign.campaign_id)
        return message if message.state == comms_pb2.MESSAGE_STATE_SUBMITTED else None

    message = await eventually(submitted)
    # A report stored but never applied, as a worker killed between recording
    # the send and applying the reports that came before it leaves one.
    ledger = Ledger(stack.service.engine)
    await ledger.add_report(
        {
            "provider_message_id": message.provider_message_id,
            "status": "Success",
            "failure_reason": "",
            "body": "",
            "receive_time": stack.clock.now(),
        }
    )

    await stack.service.sweeper.sweep()

    (swept,) = await stack.messages(campaign.campaign_id)
    assert swept.state == comms_pb2.MESSAGE_STATE_DELIVERED
    assert swept.provider_status == "Success"
    assert await ledger.reports_of_carried_ids(10) == []
