"""Tests of scoring: no leakage past as_of, determinism, shapes and ranges."""

from datetime import timedelta

import numpy as np
import pytest
from retain_inference.scoring import ScoreBatch, score
from retain_inference.sequences import CustomerSequence

DAY_S = 86_400


def assert_same_scores(actual: ScoreBatch, expected: ScoreBatch) -> None:
    np.testing.assert_array_equal(actual.customer_ids, expected.customer_ids)
    np.testing.assert_array_equal(actual.churn_probability, expected.churn_probability)
    np.testing.assert_array_equal(
        actual.expected_days_to_next_event, expected.expected_days_to_next_event
    )


def test_scores_keep_input_order(trained, sequences, label_end):
    batch = score(trained.predictor, sequences, label_end, batch_size=64)

    assert batch.customer_ids.tolist() == [s.customer_id for s in sequences]
    assert batch.churn_probability.shape == (len(sequences),)
    assert batch.expected_days_to_next_event.shape == (len(sequences),)
    assert batch.reason_inputs.purchase_count.shape == (len(sequences),)
    assert np.all((batch.churn_probability > 0) & (batch.churn_probability < 1))
    assert np.all(batch.expected_days_to_next_event > 0)
    assert batch.horizon_days == trained.config.horizon_days


def test_events_after_as_of_do_not_change_scores(trained, synthetic_customers, cutoff):
    as_of = cutoff + timedelta(days=10)
    # Customers with events up to 40 days past as_of, and the same cut at as_of.
    full = synthetic_customers(200, seed=11, end=as_of + timedelta(days=40))
    as_of_s = as_of.timestamp()
    cut = [
        CustomerSequence(
            s.customer_id,
            s.occurred_s[s.occurred_s < as_of_s],
            s.event_types[s.occurred_s < as_of_s],
            s.amounts_micros[s.occurred_s < as_of_s],
        )
        for s in full
    ]
    assert sum(len(f.occurred_s) - len(c.occurred_s) for f, c in zip(full, cut)) > 100

    with_future = score(trained.predictor, full, as_of, batch_size=64)
    without_future = score(trained.predictor, cut, as_of, batch_size=64)

    assert_same_scores(with_future, without_future)
    for name, values in vars(without_future.reason_inputs).items():
        np.testing.assert_array_equal(
            getattr(with_future.reason_inputs, name), values, err_msg=name
        )


def test_event_at_as_of_is_ignored(trained, sequences, label_end):
    as_of_s = int(label_end.timestamp())
    at_as_of = [
        CustomerSequence(
            s.customer_id,
            np.append(s.occurred_s[s.occurred_s < as_of_s], as_of_s),
            np.append(s.event_types[s.occurred_s < as_of_s], 1).astype(np.int32),
            np.append(s.amounts_micros[s.occurred_s < as_of_s], 10**9),
        )
        for s in sequences
    ]

    assert_same_scores(
        score(trained.predictor, at_as_of, label_end),
        score(trained.predictor, sequences, label_end),
    )


def test_scoring_twice_gives_identical_scores(trained, sequences, label_end):
    assert_same_scores(
        score(trained.predictor, sequences, label_end, batch_size=64),
        score(trained.predictor, sequences, label_end, batch_size=64),
    )


def test_batch_size_barely_changes_scores(trained, sequences, label_end):
    small = score(trained.predictor, sequences, label_end, batch_size=7)
    large = score(trained.predictor, sequences, label_end, batch_size=1000)

    np.testing.assert_allclose(
        small.churn_probability, large.churn_probability, atol=1e-6
    )
    np.testing.assert_allclose(
        small.expected_days_to_next_event, large.expected_days_to_next_event, rtol=1e-5
    )


def test_scoring_empty_list_returns_empty_batch(trained, label_end):
    batch = score(trained.predictor, [], label_end)

    assert batch.customer_ids.shape == (0,)
    assert batch.churn_probability.shape == (0,)


def test_invalid_batch_size_is_rejected(trained, sequences, label_end):
    with pytest.raises(ValueError, match="batch_size must be at least 1, got 0"):
        score(trained.predictor, sequences, label_end, batch_size=0)
