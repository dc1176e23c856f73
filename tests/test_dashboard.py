"""The dashboard in headless Chromium, through Envoy, on the session's demo data.

One walkthrough signs in, reads the overview and the at-risk list, creates a
campaign, dry-runs it, has the second admin approve it, launches it, waits
for delivered messages, stops every campaign, resumes, and signs out. The
checks below then read what the browser did back from the services.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from retain.comms.v1 import comms_pb2

from retain_cli.admin_accounts import AdminAccount
from retain_cli.clients import Clients
from retain_cli.demo import Summary
from retain_cli.stack import Stack
from retain_cli.walkthrough import Walkthrough, run_walkthrough
from stack_ledger import all_messages

PAGES = (
    "sign-in",
    "overview",
    "at-risk",
    "campaigns",
    "new-campaign",
    "campaign",
    "messages",
    "roi",
)
FINAL_STATES = {
    comms_pb2.MESSAGE_STATE_DELIVERED,
    comms_pb2.MESSAGE_STATE_FAILED,
    comms_pb2.MESSAGE_STATE_SUPPRESSED,
    comms_pb2.MESSAGE_STATE_DROPPED,
    comms_pb2.MESSAGE_STATE_DELIVERY_UNKNOWN,
}


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture(scope="module")
def walk(
    stack: Stack, summary: Summary, admins: list[AdminAccount], screenshots: Path
) -> Walkthrough:
    assert stack.dashboard_port is not None, (
        "frontend/dist is missing: run make frontend"
    )
    result = run_walkthrough(
        stack.gateway_url,
        admins,
        screenshots,
        results_campaign=summary.values["campaign_id"],
    )
    assert result.returncode == 0, result.output
    return result


def walked_campaign(walk: Walkthrough, clients: Clients) -> comms_pb2.Campaign:
    campaign_id = int(walk.outcome["campaignId"])
    reply = clients.comms.GetCampaign(
        comms_pb2.GetCampaignRequest(campaign_id=campaign_id), timeout=10
    )
    return reply.campaign


def test_campaign_needs_two_admins(
    walk: Walkthrough, clients: Clients, admins: list[AdminAccount]
) -> None:
    campaign = walked_campaign(walk, clients)
    assert campaign.spec.name == "Browser walkthrough"
    assert campaign.created_by == admins[0].email
    assert campaign.approved_by == admins[1].email
    assert campaign.launch_time.seconds > 0


def test_walked_messages_end_delivered(walk: Walkthrough, clients: Clients) -> None:
    campaign = walked_campaign(walk, clients)
    messages = all_messages(clients, campaign.campaign_id)
    delivered = [m for m in messages if m.state == comms_pb2.MESSAGE_STATE_DELIVERED]
    assert {m.state for m in messages} <= FINAL_STATES
    assert len(delivered) == walk.outcome["delivered"] > 0
    assert len(messages) == campaign.counts.treated_count


def test_dry_run_matches_launch(walk: Walkthrough, clients: Clients) -> None:
    campaign = walked_campaign(walk, clients)
    assert walk.outcome["dryRunTreated"] == campaign.counts.treated_count


def test_cap_holds_back_demo_recipients(
    walk: Walkthrough, clients: Clients, summary: Summary
) -> None:
    demo_messaged = {
        m.customer_id for m in all_messages(clients, summary.values["campaign_id"])
    }
    campaign = walked_campaign(walk, clients)
    walked = {m.customer_id for m in all_messages(clients, campaign.campaign_id)}
    assert campaign.counts.capped_count > 0
    assert not walked & demo_messaged


def test_stop_pauses_or_finds_finished(walk: Walkthrough) -> None:
    assert walk.outcome["stopNotice"].startswith("Paused")
    assert walk.outcome["statusAfterStop"] in ("Paused", "Finished")


def test_each_page_is_captured(walk: Walkthrough, screenshots: Path) -> None:
    for page in PAGES:
        picture = screenshots / f"{page}.png"
        assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", page
        assert picture.stat().st_size > 10_000, page
