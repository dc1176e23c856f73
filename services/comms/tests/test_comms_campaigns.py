"""The campaign life cycle, access rules, validation, the global stop and
results."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import grpc
import pytest
from comms_doubles import phone_of
from comms_harness import Stack, campaign_spec
from retain.comms.v1 import comms_pb2, comms_pb2_grpc
from retain.type.v1 import channel_pb2
from retain_comms.batches import CAPPED_REASON
from retain_comms.queue import QUEUE_NAME
from retain_comms.results import Activity, compare
from retain_runtime.callers import SUBJECT_HEADER
from retain_runtime.certs import CertPaths
from retain_runtime.credentials import aio_channel
from retain_runtime.money import kes


def stub_as(stack: Stack, cert_dir: Path, name: str) -> comms_pb2_grpc.CommsServiceStub:
    paths = CertPaths.in_directory(cert_dir, name)
    return comms_pb2_grpc.CommsServiceStub(
        aio_channel(f"127.0.0.1:{stack.service.port}", paths)
    )


async def test_creator_cannot_approve_own_campaign(
    stack: Stack, cert_dir: Path
) -> None:
    envoy = stub_as(stack, cert_dir, "envoy")
    ann = ((SUBJECT_HEADER, "ann@example.com"),)
    bob = ((SUBJECT_HEADER, "bob@example.com"),)
    created = await envoy.CreateCampaign(
        comms_pb2.CreateCampaignRequest(spec=campaign_spec()), metadata=ann, timeout=5
    )
    campaign_id = created.campaign.campaign_id
    await envoy.SubmitCampaign(
        comms_pb2.SubmitCampaignRequest(campaign_id=campaign_id),
        metadata=ann,
        timeout=5,
    )

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await envoy.ApproveCampaign(
            comms_pb2.ApproveCampaignRequest(campaign_id=campaign_id),
            metadata=ann,
            timeout=5,
        )
    approved = await envoy.ApproveCampaign(
        comms_pb2.ApproveCampaignRequest(campaign_id=campaign_id),
        metadata=bob,
        timeout=5,
    )

    assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert created.campaign.created_by == "ann@example.com"
    assert approved.campaign.approved_by == "bob@example.com"
    assert approved.campaign.status == comms_pb2.CAMPAIGN_STATUS_APPROVED


async def test_stranger_is_denied(stack: Stack, cert_dir: Path) -> None:
    stranger = stub_as(stack, cert_dir, "stranger")

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stranger.ListCampaigns(comms_pb2.ListCampaignsRequest(), timeout=5)

    assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"holdout_share": 0.6}, "spec.holdout_share"),
        ({"min_churn_probability": 1.5}, "spec.min_churn_probability"),
        ({"budget": {"currency_code": "USD", "amount_micros": 1}}, "spec.budget"),
        ({"channel": channel_pb2.CHANNEL_USSD}, "spec.channel"),
        ({"purpose": channel_pb2.PURPOSE_UNSPECIFIED}, "spec.purpose"),
        ({"name": ""}, "spec.name"),
        ({"send_window": {"start_minute": 1500, "end_minute": 60}}, "spec.send_window"),
    ],
    ids=["holdout", "threshold", "currency", "channel", "purpose", "name", "window"],
)
async def test_invalid_spec_names_the_field(
    stack: Stack, overrides: dict[str, object], field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stack.create(**overrides)

    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert (caught.value.details() or "").startswith(field)


async def test_defaults_fill_the_spec(stack: Stack) -> None:
    campaign = await stack.create()

    assert campaign.status == comms_pb2.CAMPAIGN_STATUS_DRAFT
    assert campaign.spec.send_window == comms_pb2.SendWindow(
        start_minute=420, end_minute=1140
    )
    assert campaign.spec.frequency_cap == comms_pb2.FrequencyCap(
        max_messages=1, period_days=7
    )
    assert campaign.spec.max_segments == 1
    assert campaign.spec.max_age_hours == 48


async def test_launch_requires_approval(stack: Stack) -> None:
    campaign = await stack.create()

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stack.comms.LaunchCampaign(
            comms_pb2.LaunchCampaignRequest(campaign_id=campaign.campaign_id), timeout=5
        )

    assert caught.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "only an approved campaign" in (caught.value.details() or "")


async def test_list_campaigns_pages_newest_first(stack: Stack) -> None:
    created = [(await stack.create(name=f"c{i}")).campaign_id for i in range(3)]

    first = await stack.comms.ListCampaigns(
        comms_pb2.ListCampaignsRequest(page_size=2), timeout=5
    )
    second = await stack.comms.ListCampaigns(
        comms_pb2.ListCampaignsRequest(page_size=2, page_token=first.next_page_token),
        timeout=5,
    )

    assert [c.campaign_id for c in first.campaigns] == created[::-1][:2]
    assert [c.campaign_id for c in second.campaigns] == created[:1]
    assert second.next_page_token == ""


async def test_frequency_cap_drops_recently_messaged_customers(stack: Stack) -> None:
    stack.add_customers(range(1, 11))
    first = await stack.launch(holdout_share=0.0)

    second = await stack.launch(holdout_share=0.0)

    assert first.counts.treated_count == 10
    assert second.counts.capped_count == 10
    assert second.counts.treated_count == 0


async def test_worker_skips_customer_capped_since_launch(stack: Stack) -> None:
    stack.add_customers(range(1, 4))
    first = await stack.launch(holdout_share=0.0)
    await stack.comms.PauseCampaign(
        comms_pb2.PauseCampaignRequest(campaign_id=first.campaign_id), timeout=5
    )
    # A looser cap lets the second campaign take the same customers, and it
    # sends while the first is paused.
    second = await stack.launch(
        holdout_share=0.0,
        frequency_cap=comms_pb2.FrequencyCap(max_messages=2, period_days=7),
    )
    stack.start_worker()
    await stack.settled(second.campaign_id)

    await stack.comms.ResumeCampaign(
        comms_pb2.ResumeCampaignRequest(campaign_id=first.campaign_id), timeout=5
    )
    capped = await stack.settled(first.campaign_id)

    assert second.counts.treated_count == 3
    assert {m.state for m in capped} == {comms_pb2.MESSAGE_STATE_SUPPRESSED}
    assert {m.reason for m in capped} == {CAPPED_REASON}
    assert stack.emulator.receive_counts() == {phone_of(c): 1 for c in range(1, 4)}


async def test_stop_all_pauses_running_and_blocks_sends(stack: Stack) -> None:
    stack.add_customers(range(1, 6))
    running = await stack.launch(holdout_share=0.0)
    waiting = await stack.create(name="waiting")
    await stack.approve(waiting.campaign_id)

    stopped = await stack.comms.StopAllCampaigns(
        comms_pb2.StopAllCampaignsRequest(reason="wrong offer"), timeout=5
    )
    with pytest.raises(grpc.aio.AioRpcError) as launch_refused:
        await stack.comms.LaunchCampaign(
            comms_pb2.LaunchCampaignRequest(campaign_id=waiting.campaign_id), timeout=5
        )
    stack.start_worker()
    await asyncio.to_thread(stack.service.broker.join, QUEUE_NAME, timeout=10_000)
    await asyncio.to_thread(stack.worker.join)  # type: ignore[union-attr]

    assert list(stopped.paused_campaign_ids) == [running.campaign_id]
    assert launch_refused.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert stack.emulator.messages() == []
    pending = await stack.messages(running.campaign_id, comms_pb2.MESSAGE_STATE_PENDING)
    assert len(pending) == 5

    await stack.comms.ResumeAllCampaigns(
        comms_pb2.ResumeAllCampaignsRequest(), timeout=5
    )
    await stack.comms.ResumeCampaign(
        comms_pb2.ResumeCampaignRequest(campaign_id=running.campaign_id), timeout=5
    )
    await stack.settled(running.campaign_id)
    assert len(stack.emulator.messages()) == 5


async def test_message_stats_count_states_and_spend(stack: Stack) -> None:
    stack.add_customers(range(1, 5))
    stack.start_worker()
    campaign = await stack.launch(holdout_share=0.0, budget=kes(2_000_000))
    await stack.settled(campaign.campaign_id)

    stats = await stack.comms.GetMessageStats(
        comms_pb2.GetMessageStatsRequest(campaign_id=campaign.campaign_id), timeout=5
    )

    counts = {c.state: c.message_count for c in stats.counts}
    assert counts[comms_pb2.MESSAGE_STATE_SUPPRESSED] == 2
    assert sum(counts.values()) == 4
    assert stats.spend == kes(1_600_000)


def test_compare_matches_hand_computed_figures() -> None:
    treated = [Activity(1, 2_000_000)] * 60 + [Activity(0, 0)] * 40
    control = [Activity(1, 0)] * 40 + [Activity(0, 0)] * 60

    result = compare(treated, control)

    half_width = 1.959964 * math.sqrt(0.6 * 0.4 / 100 + 0.4 * 0.6 / 100)
    mde = (1.959964 + 0.841621) * math.sqrt(0.5 * 0.5 * (2 / 100))
    assert result.uplift == pytest.approx(0.2)
    assert result.ci_low == pytest.approx(0.2 - half_width, abs=1e-5)
    assert result.ci_high == pytest.approx(0.2 + half_width, abs=1e-5)
    assert result.minimum_detectable_effect == pytest.approx(mde, abs=1e-5)
    assert result.treated_mean_spend_micros == pytest.approx(1_200_000)


async def test_results_compare_treated_with_control(stack: Stack) -> None:
    stack.add_customers(range(1, 101))
    campaign = await stack.launch(holdout_share=0.5)
    for customer_id in range(1, 101):
        if customer_id % 2 == 0:
            stack.events.activity[customer_id] = (1, 1_000_000)

    results = await stack.comms.GetCampaignResults(
        comms_pb2.GetCampaignResultsRequest(campaign_id=campaign.campaign_id), timeout=5
    )

    assert results.treated_count == 50
    assert results.control_count == 50
    assert results.uplift == pytest.approx(
        results.retention_treated - results.retention_control
    )
    assert results.uplift_ci_low < results.uplift < results.uplift_ci_high
    assert results.minimum_detectable_effect > 0
    assert results.spend == kes(0)
    expected_revenue = round(
        results.uplift * 50 * results.retention_treated * 1_000_000
    )
    assert results.revenue_retained.amount_micros == pytest.approx(
        expected_revenue, abs=1
    )
    assert results.net_revenue == results.revenue_retained
    (request,) = stack.events.requests
    assert request.start_time == campaign.launch_time
