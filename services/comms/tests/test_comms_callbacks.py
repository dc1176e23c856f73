"""Africa's Talking callbacks: delivery reports and inbound SMS."""

from __future__ import annotations

import asyncio
from urllib.parse import urlencode

import grpc
import httpx
import pytest
import sqlalchemy as sa
from comms_doubles import phone_of
from comms_harness import SECRET, Stack, eventually
from google.api import httpbody_pb2
from retain.comms.v1 import comms_pb2
from retain.type.v1 import channel_pb2
from retain.user.v1 import user_pb2
from retain_comms.ledger import Ledger, ReportMove
from retain_comms.reports import ReportWriter
from retain_comms.tables import delivery_reports
from retain_emulator import DeliveryPlan
from retain_runtime.errors import Unavailable

FORM = "application/x-www-form-urlencoded"


def report_request(
    provider_id: str, status: str, secret: str = SECRET, reason: str = ""
) -> comms_pb2.ReceiveDeliveryReportRequest:
    fields = {
        "id": provider_id,
        "status": status,
        "phoneNumber": phone_of(1),
        "networkCode": "63902",
        "failureReason": reason,
        "retryCount": "0",
    }
    return comms_pb2.ReceiveDeliveryReportRequest(
        secret=secret,
        http_body=httpbody_pb2.HttpBody(
            content_type=FORM, data=urlencode(fields).encode()
        ),
    )


async def one_message(stack: Stack, campaign_id: int) -> comms_pb2.Message:
    (message,) = await stack.messages(campaign_id)
    return message


async def submitted_message(stack: Stack) -> comms_pb2.Message:
    """Send one message whose delivery report never comes on its own."""
    (message,) = await submitted_messages(stack, 1)
    return message


async def submitted_messages(stack: Stack, count: int) -> list[comms_pb2.Message]:
    """Send count messages whose delivery reports never come on their own."""
    stack.emulator.set_callback_url(None)
    stack.add_customers(range(1, count + 1))
    stack.start_worker()
    campaign = await stack.launch(holdout_share=0.0)

    async def submitted() -> list[comms_pb2.Message] | None:
        found = await stack.messages(campaign.campaign_id)
        done = all(m.state == comms_pb2.MESSAGE_STATE_SUBMITTED for m in found)
        return found if done and len(found) == count else None

    return await eventually(submitted)


async def report_count(stack: Stack) -> int:
    async with stack.service.engine.connect() as conn:
        return int(
            await conn.scalar(sa.select(sa.func.count()).select_from(delivery_reports))
        )


async def test_delivery_report_marks_delivered_and_repeat_changes_nothing(
    stack: Stack,
) -> None:
    stack.emulator.set_delivery_plan(DeliveryPlan(duplicates=2))
    stack.add_customers([1])
    stack.start_worker()

    campaign = await stack.launch(holdout_share=0.0)
    await stack.settled(campaign.campaign_id)
    assert await asyncio.to_thread(stack.emulator.wait_for_reports, 10)
    delivered = await one_message(stack, campaign.campaign_id)

    assert delivered.state == comms_pb2.MESSAGE_STATE_DELIVERED
    assert delivered.provider_status == "Success"
    assert [r["outcome"] for r in stack.emulator.reports()] == ["delivered"] * 3
    await stack.comms.ReceiveDeliveryReport(
        report_request(delivered.provider_message_id, "Success"), timeout=5
    )
    assert await one_message(stack, campaign.campaign_id) == delivered
    assert await report_count(stack) == 4


async def test_intermediate_report_after_final_changes_nothing(stack: Stack) -> None:
    message = await submitted_message(stack)
    await stack.comms.ReceiveDeliveryReport(
        report_request(message.provider_message_id, "Success"), timeout=5
    )
    delivered = await one_message(stack, message.campaign_id)

    for status in ("Buffered", "Sent", "Failed"):
        await stack.comms.ReceiveDeliveryReport(
            report_request(message.provider_message_id, status), timeout=5
        )

    assert await one_message(stack, message.campaign_id) == delivered
    assert delivered.state == comms_pb2.MESSAGE_STATE_DELIVERED


async def test_failed_report_records_failure_reason(stack: Stack) -> None:
    stack.emulator.set_delivery_plan(
        DeliveryPlan(
            intermediate_statuses=("Buffered",),
            final_status="Failed",
            failure_reason="DeliveryFailure",
        )
    )
    stack.add_customers([1])
    stack.start_worker()

    campaign = await stack.launch(holdout_share=0.0)
    (message,) = await stack.settled(campaign.campaign_id)

    assert message.state == comms_pb2.MESSAGE_STATE_FAILED
    assert message.reason == "DeliveryFailure"
    assert message.provider_status == "Failed"


@pytest.mark.parametrize("secret", ["wrong-secret", ""], ids=["wrong", "missing"])
async def test_wrong_secret_changes_nothing(stack: Stack, secret: str) -> None:
    message = await submitted_message(stack)
    reports_before = await report_count(stack)

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stack.comms.ReceiveDeliveryReport(
            report_request(message.provider_message_id, "Success", secret), timeout=5
        )

    assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert await one_message(stack, message.campaign_id) == message
    assert await report_count(stack) == reports_before


async def test_unknown_status_is_kept_raw(stack: Stack) -> None:
    message = await submitted_message(stack)

    await stack.comms.ReceiveDeliveryReport(
        report_request(message.provider_message_id, "Teleported"), timeout=5
    )

    stored = await one_message(stack, message.campaign_id)
    assert stored.state == comms_pb2.MESSAGE_STATE_SUBMITTED
    assert stored.provider_status == "Teleported"


async def test_concurrent_reports_share_one_group(
    stack: Stack,
) -> None:
    first, second, third = await submitted_messages(stack, 3)
    writer = ReportWriter(Ledger(stack.service.engine), stack.clock)
    groups: list[int] = []
    add_reports = writer.ledger.add_reports

    async def counted(rows: list[dict[str, object]]) -> list[int]:
        groups.append(len(rows))
        return await add_reports(rows)

    writer.ledger.add_reports = counted  # type: ignore[method-assign]
    now = stack.clock.now()
    sent = [
        (first.provider_message_id, "Buffered", ""),
        (first.provider_message_id, "Success", ""),
        (first.provider_message_id, "Buffered", ""),
        (second.provider_message_id, "Failed", "DeliveryFailure"),
        ("ATXid_never_sent", "Success", ""),
        (third.provider_message_id, "Sent", ""),
    ]

    results = await asyncio.gather(
        *(
            writer.add(
                {
                    "provider_message_id": provider_id,
                    "status": status,
                    "failure_reason": reason,
                    "body": "",
                    "receive_time": now,
                }
            )
            for provider_id, status, reason in sent
        )
    )

    assert groups == [len(sent)]
    assert [carried for _, carried in results] == [True] * 4 + [False, True]
    by_id = {m.message_id: m for m in await stack.messages(first.campaign_id)}
    delivered, failed, waiting = (by_id[m.message_id] for m in (first, second, third))
    assert delivered.state == comms_pb2.MESSAGE_STATE_DELIVERED
    assert delivered.provider_status == "Success"
    assert failed.state == comms_pb2.MESSAGE_STATE_FAILED
    assert failed.reason == "DeliveryFailure"
    assert waiting.state == comms_pb2.MESSAGE_STATE_SUBMITTED
    assert waiting.provider_status == "Sent"
    async with stack.service.engine.connect() as conn:
        rows = (
            await conn.execute(
                sa.select(delivery_reports.c.report_id, delivery_reports.c.applied)
            )
        ).all()
    applied = dict(rows)
    expected = [True] * 4 + [False, True]
    assert [applied[report_id] for report_id, _ in results] == expected


async def test_report_with_nul_is_stored_beside_others(stack: Stack) -> None:
    first, second = await submitted_messages(stack, 2)

    await asyncio.gather(
        stack.comms.ReceiveDeliveryReport(
            report_request(first.provider_message_id, "Success"), timeout=5
        ),
        stack.comms.ReceiveDeliveryReport(
            report_request(second.provider_message_id + "\0", "Success"), timeout=5
        ),
    )

    by_id = {m.message_id: m for m in await stack.messages(first.campaign_id)}
    assert by_id[first.message_id].state == comms_pb2.MESSAGE_STATE_DELIVERED
    assert by_id[second.message_id].state == comms_pb2.MESSAGE_STATE_SUBMITTED
    assert await report_count(stack) == 2


def data_error() -> sa.exc.DataError:
    return sa.exc.DataError("INSERT ...", {}, ValueError("a value the table rejects"))


def report_row(stack: Stack, provider_id: str, status: str) -> dict[str, object]:
    return {
        "provider_message_id": provider_id,
        "status": status,
        "failure_reason": "",
        "body": "",
        "receive_time": stack.clock.now(),
    }


async def test_failed_group_is_stored_report_by_report(stack: Stack) -> None:
    first, second = await submitted_messages(stack, 2)
    writer = ReportWriter(Ledger(stack.service.engine), stack.clock)
    add_reports = writer.ledger.add_reports
    groups: list[int] = []

    async def reject_bad(rows: list[dict[str, object]]) -> list[int]:
        groups.append(len(rows))
        if any(row["status"] == "Bad" for row in rows):
            raise data_error()
        return await add_reports(rows)

    writer.ledger.add_reports = reject_bad  # type: ignore[method-assign]

    def row(message: comms_pb2.Message, status: str) -> dict[str, object]:
        return report_row(stack, message.provider_message_id, status)

    good, bad = await asyncio.gather(
        writer.add(row(first, "Success")),
        writer.add(row(second, "Bad")),
        return_exceptions=True,
    )

    assert groups == [2, 1, 1]
    assert isinstance(bad, sa.exc.DataError)
    assert not isinstance(good, BaseException)
    assert good[1] is True
    by_id = {m.message_id: m for m in await stack.messages(first.campaign_id)}
    assert by_id[first.message_id].state == comms_pb2.MESSAGE_STATE_DELIVERED
    assert await report_count(stack) == 1


async def test_failed_apply_stores_each_report_once(stack: Stack) -> None:
    messages = await submitted_messages(stack, 3)
    writer = ReportWriter(Ledger(stack.service.engine), stack.clock)
    apply_reports = writer.ledger.apply_reports
    applied_groups: list[int] = []

    async def fail_first(moves: list[ReportMove], now: object) -> set[str]:
        applied_groups.append(len(moves))
        if len(applied_groups) == 1:
            raise data_error()
        return await apply_reports(moves, now)  # type: ignore[arg-type]

    writer.ledger.apply_reports = fail_first  # type: ignore[method-assign]

    results = await asyncio.gather(
        *(
            writer.add(report_row(stack, m.provider_message_id, "Success"))
            for m in messages
        )
    )

    assert applied_groups == [3, 1, 1, 1]
    assert [carried for _, carried in results] == [True] * 3
    stored = await stack.messages(messages[0].campaign_id)
    assert {m.state for m in stored} == {comms_pb2.MESSAGE_STATE_DELIVERED}
    async with stack.service.engine.connect() as conn:
        rows = (await conn.execute(sa.select(delivery_reports.c.applied))).all()
    assert [applied for (applied,) in rows] == [True] * 3


async def test_database_outage_fails_group_at_once(stack: Stack) -> None:
    messages = await submitted_messages(stack, 3)
    writer = ReportWriter(Ledger(stack.service.engine), stack.clock)
    calls: list[int] = []

    async def unavailable(rows: list[dict[str, object]]) -> list[int]:
        calls.append(len(rows))
        raise sa.exc.OperationalError("INSERT ...", {}, OSError("server closed"))

    writer.ledger.add_reports = unavailable  # type: ignore[method-assign]

    results = await asyncio.gather(
        *(
            writer.add(report_row(stack, m.provider_message_id, "Success"))
            for m in messages
        ),
        return_exceptions=True,
    )

    assert calls == [3]
    assert all(isinstance(r, sa.exc.OperationalError) for r in results)


async def test_stopped_writer_fails_queued_reports(stack: Stack) -> None:
    (message,) = await submitted_messages(stack, 1)
    writer = ReportWriter(Ledger(stack.service.engine), stack.clock)
    release = asyncio.Event()
    add_reports = writer.ledger.add_reports

    async def held(rows: list[dict[str, object]]) -> list[int]:
        await release.wait()
        return await add_reports(rows)

    writer.ledger.add_reports = held  # type: ignore[method-assign]
    row = report_row(stack, message.provider_message_id, "Success")
    first = asyncio.create_task(writer.add(row))
    await asyncio.sleep(0)
    second = asyncio.create_task(writer.add(row))
    await asyncio.sleep(0)

    await writer.stop()
    results = await asyncio.gather(first, second, return_exceptions=True)

    assert [type(result) for result in results] == [Unavailable, Unavailable]
    assert await report_count(stack) == 0


async def test_report_for_unknown_message_is_accepted(stack: Stack) -> None:
    reply = await stack.comms.ReceiveDeliveryReport(
        report_request("ATXid_never_sent", "Success"), timeout=5
    )

    assert reply == comms_pb2.ReceiveDeliveryReportResponse()
    assert await report_count(stack) == 1


async def post_inbound(stack: Stack, text: str, secret: str = SECRET) -> int:
    """POST an inbound SMS the way AT does, through the Envoy stand-in."""
    form = {
        "from": phone_of(1),
        "to": "22384",
        "text": text,
        "date": "2024-03-05 10:00:00",
        "id": f"inbound-{abs(hash((text, secret)))}",
        "linkId": "",
    }
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.post(stack.bridge.url("/inbound", secret), data=form)
    return response.status_code


async def inbound_actions(stack: Stack) -> list[str]:
    reply = await stack.comms.ListInboundMessages(
        comms_pb2.ListInboundMessagesRequest(), timeout=5
    )
    return [m.action for m in reply.inbound_messages]


@pytest.mark.parametrize(
    "text", ["STOP", "  stop \n", "Stop", "ACHA", "sitisha", "UNSUBSCRIBE"]
)
async def test_stop_keyword_opts_out(stack: Stack, text: str) -> None:
    stack.add_customers([1])

    status = await post_inbound(stack, text)

    assert status == 200
    (opt_out,) = stack.user.opt_outs
    assert opt_out.phone_number == phone_of(1)
    assert opt_out.channel == channel_pb2.CHANNEL_SMS
    assert opt_out.source == user_pb2.CONSENT_SOURCE_SMS_KEYWORD
    assert 1 not in stack.user.consented
    assert await inbound_actions(stack) == ["opt_out"]


async def test_stopall_opts_out_of_every_channel(stack: Stack) -> None:
    await post_inbound(stack, "stopall")

    (opt_out,) = stack.user.opt_outs
    assert opt_out.channel == channel_pb2.CHANNEL_UNSPECIFIED


async def test_sentence_containing_stop_is_kept(stack: Stack) -> None:
    stack.add_customers([1])

    status = await post_inbound(stack, "please stop sending me this")

    assert status == 200
    assert stack.user.opt_outs == []
    assert 1 in stack.user.consented
    reply = await stack.comms.ListInboundMessages(
        comms_pb2.ListInboundMessagesRequest(), timeout=5
    )
    (kept,) = reply.inbound_messages
    assert kept.action == "kept"
    assert kept.text == "please stop sending me this"
    assert kept.phone_number_masked == "+2547******01"


async def test_start_keyword_opts_in(stack: Stack) -> None:
    stack.add_customers([1], consent=False)

    await post_inbound(stack, "START")

    (opt_in,) = stack.user.opt_ins
    assert opt_in.phone_number == phone_of(1)
    assert 1 in stack.user.consented
    assert await inbound_actions(stack) == ["opt_in"]


async def test_inbound_with_wrong_secret_is_rejected(stack: Stack) -> None:
    stack.add_customers([1])

    status = await post_inbound(stack, "STOP", secret="guess")

    assert status == 403
    assert stack.user.opt_outs == []
    assert await inbound_actions(stack) == []
