"""Delivery reports POSTed to a local callback receiver: fields, plans and retries."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import httpx
import pytest
from emulator_helpers import (
    API_KEY,
    USERNAME,
    CallbackReceiver,
    recipients_of,
    send_sms,
    wait_until,
)
from retain_emulator import AfricasTalkingEmulator, DeliveryPlan

NUMBER = "+254712345601"
OTHER_NUMBER = "+254112345678"
REPORT_FIELDS = {
    "id",
    "status",
    "phoneNumber",
    "networkCode",
    "failureReason",
    "retryCount",
}


@pytest.fixture
def reporting_emulator(
    receiver: CallbackReceiver,
) -> Iterator[AfricasTalkingEmulator]:
    with AfricasTalkingEmulator(
        USERNAME,
        API_KEY,
        receiver.url,
        report_delay=0.01,
        callback_backoff=0.01,
    ) as emulator:
        yield emulator


@pytest.fixture
def reporting_client(
    reporting_emulator: AfricasTalkingEmulator,
) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=reporting_emulator.base_url, timeout=5) as http:
        yield http


def test_success_report_has_at_form_fields(
    receiver: CallbackReceiver, reporting_client: httpx.Client
) -> None:
    [recipient] = recipients_of(send_sms(reporting_client, NUMBER))

    [report] = receiver.wait_for(1)

    assert set(report) == REPORT_FIELDS
    assert report["id"] == recipient["messageId"]
    assert report["status"] == "Success"
    assert report["phoneNumber"] == NUMBER
    assert report["networkCode"] == "63902"
    assert report["failureReason"] == ""
    assert report["retryCount"] == "0"
    assert receiver.content_types == ["application/x-www-form-urlencoded"]


def test_each_recipient_gets_one_report(
    receiver: CallbackReceiver,
    reporting_emulator: AfricasTalkingEmulator,
    reporting_client: httpx.Client,
) -> None:
    send_sms(reporting_client, f"{NUMBER},{OTHER_NUMBER},invalid")

    assert reporting_emulator.wait_for_reports()
    numbers = sorted(report["phoneNumber"] for report in receiver.reports)
    assert numbers == [OTHER_NUMBER, NUMBER]


def test_failed_plan_reports_failure_reason(
    receiver: CallbackReceiver,
    reporting_emulator: AfricasTalkingEmulator,
    reporting_client: httpx.Client,
) -> None:
    reporting_emulator.set_delivery_plan(DeliveryPlan(final_status="Failed"), NUMBER)

    send_sms(reporting_client, f"{NUMBER},{OTHER_NUMBER}")
    reports = receiver.wait_for(2)

    by_number = {report["phoneNumber"]: report for report in reports}
    assert by_number[NUMBER]["status"] == "Failed"
    assert by_number[NUMBER]["failureReason"] == "DeliveryFailure"
    assert by_number[OTHER_NUMBER]["status"] == "Success"
    assert by_number[OTHER_NUMBER]["failureReason"] == ""


def test_absent_subscriber_plan_sends_given_reason(
    receiver: CallbackReceiver,
    reporting_emulator: AfricasTalkingEmulator,
    reporting_client: httpx.Client,
) -> None:
    plan = DeliveryPlan(final_status="Rejected", failure_reason="AbsentSubscriber")
    reporting_emulator.set_delivery_plan(plan, NUMBER)

    send_sms(reporting_client, NUMBER)
    [report] = receiver.wait_for(1)

    assert report["status"] == "Rejected"
    assert report["failureReason"] == "AbsentSubscriber"


def test_intermediate_and_duplicate_reports_arrive_in_order(
    receiver: CallbackReceiver,
    reporting_emulator: AfricasTalkingEmulator,
    reporting_client: httpx.Client,
) -> None:
    plan = DeliveryPlan(intermediate_statuses=("Sent", "Submitted"), duplicates=1)
    reporting_emulator.set_delivery_plan(plan)

    [recipient] = recipients_of(send_sms(reporting_client, NUMBER))
    reports = receiver.wait_for(4)

    assert [report["status"] for report in reports] == [
        "Sent",
        "Submitted",
        "Success",
        "Success",
    ]
    assert {report["id"] for report in reports} == {recipient["messageId"]}


def test_report_is_retried_until_receiver_accepts(
    reporting_emulator: AfricasTalkingEmulator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    flaky = CallbackReceiver(fail_first=2)
    flaky.start()
    reporting_emulator.set_callback_url(flaky.url)
    caplog.set_level(logging.DEBUG, logger="retain_emulator")
    try:
        with httpx.Client(base_url=reporting_emulator.base_url) as http:
            send_sms(http, NUMBER)
        reports = flaky.wait_for(1)
    finally:
        flaky.stop()

    assert len(reports) == 1
    assert flaky.failed_posts == 2
    assert reporting_emulator.wait_for_reports()
    [record] = reporting_emulator.reports()
    assert record["outcome"] == "delivered"
    assert record["attempts"] == 3
    retries = [r for r in caplog.records if "retrying" in r.getMessage()]
    assert len(retries) == 2


def test_report_gives_up_after_max_attempts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broken = CallbackReceiver(fail_first=100, failure_status=503)
    broken.start()
    caplog.set_level(logging.DEBUG, logger="retain_emulator")
    try:
        with (
            AfricasTalkingEmulator(
                USERNAME,
                API_KEY,
                broken.url,
                report_delay=0.01,
                callback_attempts=3,
                callback_backoff=0.01,
            ) as emulator,
            httpx.Client(base_url=emulator.base_url) as http,
        ):
            send_sms(http, NUMBER)
            assert emulator.wait_for_reports()
            [record] = emulator.reports()
    finally:
        broken.stop()

    assert record["outcome"] == "failed"
    assert record["attempts"] == 3
    assert record["lastHttpStatus"] == 503
    assert broken.failed_posts == 3
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1


def test_logs_mask_numbers_and_omit_api_key(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broken = CallbackReceiver(fail_first=100)
    broken.start()
    caplog.set_level(logging.DEBUG)
    try:
        with (
            AfricasTalkingEmulator(
                USERNAME,
                API_KEY,
                broken.url,
                report_delay=0.01,
                callback_attempts=2,
                callback_backoff=0.01,
            ) as emulator,
            httpx.Client(base_url=emulator.base_url) as http,
        ):
            send_sms(http, NUMBER)
            assert emulator.wait_for_reports()
    finally:
        broken.stop()

    emulator_logs = "\n".join(
        record.getMessage()
        for record in caplog.records
        if record.name.startswith("retain_emulator")
    )
    assert "+2547******01" in emulator_logs
    assert NUMBER not in emulator_logs
    assert API_KEY not in emulator_logs


def test_no_callback_url_means_no_reports(
    emulator: AfricasTalkingEmulator, client: httpx.Client
) -> None:
    assert send_sms(client, NUMBER).status_code == 201

    assert emulator.wait_for_reports(timeout=1)
    assert emulator.reports() == []


def test_send_reply_does_not_wait_for_slow_callback(
    receiver: CallbackReceiver,
) -> None:
    with (
        AfricasTalkingEmulator(USERNAME, API_KEY, receiver.url, report_delay=30) as emu,
        httpx.Client(base_url=emu.base_url, timeout=2) as http,
    ):
        response = send_sms(http, NUMBER)
        pending = emu.reports()

    assert response.status_code == 201
    assert [record["outcome"] for record in pending] == ["pending"]
    assert receiver.reports == []


def test_callback_url_can_be_set_after_start(
    receiver: CallbackReceiver,
    emulator: AfricasTalkingEmulator,
    client: httpx.Client,
) -> None:
    response = client.put("/_emulator/callback-url", json={"url": receiver.url})
    assert response.status_code == 200

    send_sms(client, NUMBER)

    assert len(receiver.wait_for(1)) == 1
    assert wait_until(lambda: emulator.reports()[0]["outcome"] == "delivered")


def test_delivery_plan_rejects_unknown_status() -> None:
    with pytest.raises(ValueError, match="unknown delivery status"):
        DeliveryPlan(final_status="Delivered")
