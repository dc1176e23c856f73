"""The demo end to end on a slice of CDNOW, with every figure checked against
the services' own ledgers."""

from __future__ import annotations

import httpx
from retain.comms.v1 import comms_pb2
from retain.type.v1 import channel_pb2
from retain.user.v1 import user_pb2

from retain_cli import cdnow
from retain_cli.clients import Clients
from retain_cli.demo import Summary
from retain_cli.stack import Stack
from stack_ledger import DEMO_CUSTOMERS, all_messages, delivered_count


def test_every_customer_is_created(summary: Summary, clients: Clients) -> None:
    stats = clients.user.GetCustomerStats(user_pb2.GetCustomerStatsRequest(), timeout=10)
    assert summary.values["customers"] == DEMO_CUSTOMERS
    assert stats.customer_count == DEMO_CUSTOMERS
    assert stats.marketing_sms_consent_count == summary.values["consented"]
    assert 0.85 * DEMO_CUSTOMERS < summary.values["consented"] < 0.95 * DEMO_CUSTOMERS


def test_calibration_events_are_all_stored(summary: Summary) -> None:
    purchases = cdnow.read_purchases()
    kept = set(sorted({p.customer for p in purchases})[:DEMO_CUSTOMERS])
    expected = sum(
        1 for p in purchases if p.customer in kept and p.occur_time < cdnow.CALIBRATION_END
    )
    assert summary.values["events_ingested"] == expected


def test_every_customer_is_scored(summary: Summary) -> None:
    assert summary.values["scored"] == DEMO_CUSTOMERS


def test_selection_counts_add_up(summary: Summary) -> None:
    values = summary.values
    dropped = values["dropped_no_consent"] + values["dropped_capped"]
    assert values["eligible"] == values["at_risk"] - dropped
    assert values["treated"] + values["held_out"] == values["eligible"]
    assert 0.05 * values["eligible"] < values["held_out"] < 0.15 * values["eligible"]


def test_every_message_reaches_a_final_state(summary: Summary, clients: Clients) -> None:
    messages = all_messages(clients, summary.values["campaign_id"])
    delivered = [m for m in messages if m.state == comms_pb2.MESSAGE_STATE_DELIVERED]
    assert len(messages) == summary.values["treated"]
    assert len(delivered) == len(messages)
    assert summary.values["messages"]["delivered"] == len(delivered)
    assert summary.values["cost_kes"] > 0


def test_emulator_received_each_message_once(
    summary: Summary, stack: Stack, clients: Clients
) -> None:
    reply = httpx.get(f"{stack.env['AT_BASE_URL']}/_emulator/messages", timeout=10)
    counts = reply.json()["counts"]
    # Other tests of the session may have run campaigns of their own.
    assert sum(counts.values()) == delivered_count(clients)
    assert max(counts.values()) == 1


def test_no_message_without_marketing_consent(summary: Summary, clients: Clients) -> None:
    messages = all_messages(clients, summary.values["campaign_id"])
    messaged = [m.customer_id for m in messages if m.state == comms_pb2.MESSAGE_STATE_DELIVERED]
    reply = clients.user.CheckConsents(
        user_pb2.CheckConsentsRequest(
            customer_ids=messaged,
            channel=channel_pb2.CHANNEL_SMS,
            purpose=channel_pb2.PURPOSE_MARKETING,
        ),
        timeout=30,
    )
    assert sorted(reply.granted_customer_ids) == sorted(messaged)


def test_model_ranks_churners_better_than_chance(summary: Summary) -> None:
    assert summary.values["roc_auc"] > 0.65
    assert summary.values["roc_auc_13w"] > 0.65
    assert 0.0 < summary.values["pr_auc"] <= 1.0


def test_retention_is_reported_for_both_groups(summary: Summary) -> None:
    assert 0.0 < summary.values["retention_treated"] < 1.0
    assert 0.0 < summary.values["retention_control"] < 1.0


def test_every_stage_is_timed(summary: Summary) -> None:
    assert list(summary.stage_seconds) == [
        "customers", "calibration_events", "training", "scoring",
        "campaign", "delivery", "holdout_events", "evaluation",
    ]


def test_summary_explains_at_risk_customers_in_words(summary: Summary) -> None:
    examples = summary.values["examples"]
    assert len(examples) == 3
    for example in examples:
        assert example["churn_probability"] >= 0.7
        assert example["expected_days_to_next_activity"] > 0
        assert example["reasons"] and all(text.strip() for text in example["reasons"])
