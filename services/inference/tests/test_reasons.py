"""Tests that reasons state true facts about each customer's own purchases."""

import itertools
import json
import math
import statistics
from datetime import timedelta

import numpy as np
import pytest
from retain_inference.features import to_event_table
from retain_inference.reasons import (
    Reason,
    compute_reason_inputs,
    explain,
    find_reasons,
    rank_reasons,
)
from retain_inference.score_copy import reasons_json_column
from retain_inference.sequences import CustomerSequence

DAY_S = 86_400


def customer(
    as_of, days_before: list[float], amounts_kes=None, event_types=None
) -> CustomerSequence:
    """Make a customer whose events lie `days_before` days before `as_of`."""
    occurred_s = [int(as_of.timestamp() - d * DAY_S) for d in days_before]
    count = len(occurred_s)
    return CustomerSequence(
        customer_id=1,
        occurred_s=np.array(occurred_s, dtype=np.int64),
        event_types=np.array(event_types or [1] * count, dtype=np.int32),
        amounts_micros=np.array(amounts_kes or [100] * count, dtype=np.int64)
        * 1_000_000,
    )


def reasons_of(sequence: CustomerSequence, as_of, max_reasons: int = 3) -> list[Reason]:
    inputs = compute_reason_inputs(to_event_table([sequence]), as_of)
    return explain(inputs, 0, max_reasons=max_reasons)


def test_idle_customer_gets_no_activity(label_end):
    # Ten purchases four days apart, the last 23 days and 6 hours ago.
    sequence = customer(label_end, [23.25 + 4 * k for k in range(9, -1, -1)])

    reasons = reasons_of(sequence, label_end)

    assert reasons[0] == Reason(
        "NO_ACTIVITY_SINCE",
        {"days": 23, "usual_gap_days": 4},
        "no purchases in 23 days; usually one every 4 days",
    )


def test_max_reasons_limits_the_list(label_end):
    sequence = customer(label_end, [23.25 + 4 * k for k in range(9, -1, -1)])

    assert len(reasons_of(sequence, label_end)) == 2
    assert [r.code for r in reasons_of(sequence, label_end, max_reasons=1)] == [
        "NO_ACTIVITY_SINCE"
    ]


def test_single_purchase_states_its_age(label_end):
    sequence = customer(label_end, [120.5])

    assert reasons_of(sequence, label_end) == [
        Reason(
            "SINGLE_PURCHASE", {"days": 120}, "only one purchase so far, 120 days ago"
        )
    ]


def test_falling_spend_gets_spend_down(label_end):
    # KES 3,000 in days 60 to 30 before as_of, then KES 1,200 in the last 30 days.
    sequence = customer(
        label_end, [55, 48, 41, 34, 27, 20, 13, 6], [750] * 4 + [300] * 4
    )

    assert reasons_of(sequence, label_end) == [
        Reason(
            "SPEND_DOWN",
            {
                "percent": 60,
                "recent_kes": 1200,
                "previous_kes": 3000,
                "window_days": 30,
            },
            "spent KES 1,200 in the last 30 days, down 60% on the 30 days before",
        )
    ]


def test_slower_buying_gets_few_purchases(label_end):
    # 31 purchases ten days apart from 395 to 95 days before as_of, then two more.
    sequence = customer(label_end, [*range(395, 94, -10), 58, 5])
    earlier_rate = 31 / (395 - 90) * 90

    assert reasons_of(sequence, label_end) == [
        Reason(
            "FEW_PURCHASES",
            {"count": 2, "window_days": 90, "usual_count": round(earlier_rate, 1)},
            "2 purchases in the last 90 days; before that, 9.1 per 90 days on average",
        )
    ]


def test_customer_without_purchases_gets_no_purchases(label_end):
    other_events_only = customer(label_end, [10, 5], event_types=[2, 3])
    no_events = customer(label_end, [])

    expected = [Reason("NO_PURCHASES", {}, "no purchases yet")]
    assert reasons_of(other_events_only, label_end) == expected
    assert reasons_of(no_events, label_end) == expected


def test_steady_customer_gets_last_purchase(label_end):
    sequence = customer(label_end, list(range(88, 0, -3)))

    assert reasons_of(sequence, label_end) == [
        Reason(
            "LAST_PURCHASE",
            {"count": 30, "days": 1, "first_to_last_days": 87},
            "30 purchases so far, the last 1 day ago",
        )
    ]


def test_last_purchase_within_a_day(label_end):
    sequence = customer(label_end, [6.5, 3.5, 0.5])

    assert [r.text for r in reasons_of(sequence, label_end)] == [
        "3 purchases so far, the last in the past day"
    ]


def test_two_purchases_state_their_gap(label_end):
    # Two purchases on back-to-back days, the last 271 days and 6 hours ago.
    sequence = customer(label_end, [272.25, 271.25])

    assert reasons_of(sequence, label_end) == [
        Reason(
            "LAST_PURCHASE",
            {"count": 2, "days": 271, "first_to_last_days": 1},
            "2 purchases so far, 1 day apart; the last 271 days ago",
        )
    ]


def test_two_purchases_on_one_day(label_end):
    sequence = customer(label_end, [40.75, 40.25])

    assert [r.text for r in reasons_of(sequence, label_end)] == [
        "2 purchases so far, less than a day apart; the last 40 days ago"
    ]


def test_three_purchases_get_usual_gap(label_end):
    sequence = customer(label_end, [273.25, 272.25, 271.25])

    assert reasons_of(sequence, label_end)[0] == Reason(
        "NO_ACTIVITY_SINCE",
        {"days": 271, "usual_gap_days": 1},
        "no purchases in 271 days; usually one every 1 day",
    )


def test_reasons_ignore_later_purchases(label_end):
    sequence = customer(label_end, [120.5, -1, -2])

    assert [r.code for r in reasons_of(sequence, label_end)] == ["SINGLE_PURCHASE"]


def purchases_before(sequence: CustomerSequence, as_of) -> list[tuple[float, float]]:
    """Return (days before `as_of`, KES) of each purchase before `as_of`."""
    is_purchase = (sequence.event_types == 1) & (
        sequence.occurred_s < as_of.timestamp()
    )
    return [
        ((as_of.timestamp() - t) / DAY_S, a / 1e6)
        for t, a in zip(
            sequence.occurred_s[is_purchase].tolist(),
            sequence.amounts_micros[is_purchase].tolist(),
        )
    ]


def check_reason_against_history(reason: Reason, purchases: list[tuple[float, float]]):
    """Recompute the facts of `reason` from (days before as_of, KES) purchases."""
    ages = sorted(age for age, _ in purchases)
    params = reason.params
    if reason.code == "NO_PURCHASES":
        assert ages == []
    elif reason.code == "SINGLE_PURCHASE":
        assert len(ages) == 1
        assert params["days"] == math.floor(ages[0])
    elif reason.code == "NO_ACTIVITY_SINCE":
        assert len(ages) >= 3
        median_gap = statistics.median(b - a for a, b in itertools.pairwise(ages))
        assert params["days"] == math.floor(ages[0])
        assert ages[0] >= 2 * median_gap
        assert params["usual_gap_days"] == max(1, round(median_gap))
    elif reason.code == "SPEND_DOWN":
        recent = sum(kes for age, kes in purchases if age < 30)
        previous = sum(kes for age, kes in purchases if 30 <= age < 60)
        assert 0 < recent < previous
        assert params["recent_kes"] == round(recent)
        assert params["previous_kes"] == round(previous)
        assert params["percent"] == round(100 * (1 - recent / previous))
    elif reason.code == "FEW_PURCHASES":
        recent_count = sum(1 for age in ages if age < 90)
        earlier_rate = (len(ages) - recent_count) / (ages[-1] - 90) * 90
        assert params["count"] == recent_count
        assert params["usual_count"] == round(earlier_rate, 1)
        assert recent_count <= earlier_rate / 2
    elif reason.code == "LAST_PURCHASE":
        assert len(ages) >= 2
        assert params["count"] == len(ages)
        assert params["days"] == math.floor(ages[0])
        assert params["first_to_last_days"] == math.floor(ages[-1] - ages[0])
    else:
        pytest.fail(f"unexpected reason code {reason.code}")
    if len(ages) < 3:
        assert "usually" not in reason.text


def test_reasons_are_true_of_random_customers(synthetic_customers, cutoff):
    as_of = cutoff + timedelta(days=20)
    sequences = synthetic_customers(300, seed=5, end=as_of + timedelta(days=30))
    inputs = compute_reason_inputs(to_event_table(sequences), as_of)
    codes = set()

    for row, sequence in enumerate(sequences):
        purchases = purchases_before(sequence, as_of)
        for reason in explain(inputs, row):
            check_reason_against_history(reason, purchases)
            codes.add(reason.code)

    # The data must exercise every rule, or the checks above prove little.
    assert codes == {
        "NO_PURCHASES",
        "SINGLE_PURCHASE",
        "NO_ACTIVITY_SINCE",
        "SPEND_DOWN",
        "FEW_PURCHASES",
        "LAST_PURCHASE",
    }


def test_every_customer_gets_a_reason(synthetic_customers, cutoff):
    as_of = cutoff + timedelta(days=20)
    sequences = synthetic_customers(1000, seed=11, end=as_of + timedelta(days=30))
    inputs = compute_reason_inputs(to_event_table(sequences), as_of)

    top_rules = rank_reasons(find_reasons(inputs))[:, 0]
    stored = [json.loads(column) for column in reasons_json_column(inputs)]

    assert (top_rules >= 0).all()
    assert all(len(reasons) >= 1 for reasons in stored)
    for row in range(len(sequences)):
        assert len(explain(inputs, row)) >= 1


def test_two_purchase_customers_never_get_usual_gap(synthetic_customers, cutoff):
    as_of = cutoff + timedelta(days=20)
    sequences = synthetic_customers(3000, seed=13, end=as_of + timedelta(days=30))
    inputs = compute_reason_inputs(to_event_table(sequences), as_of)
    two_purchase_rows = np.flatnonzero(inputs.purchase_count == 2)
    stored = reasons_json_column(inputs)

    assert two_purchase_rows.shape[0] >= 20
    for row in two_purchase_rows.tolist():
        purchases = purchases_before(sequences[row], as_of)
        assert len(purchases) == 2
        for reason in explain(inputs, row):
            assert reason.code != "NO_ACTIVITY_SINCE"
            assert "usually" not in reason.text
            check_reason_against_history(reason, purchases)
        assert "usually" not in stored[row]
