"""Tests of the count head's forecast of events in a window after as_of."""

from datetime import timedelta

import numpy as np
import pytest
from retain_inference.features import to_event_table
from retain_inference.scoring import score
from retain_inference.sequences import CustomerSequence

DAY_S = 86_400


def regular_customer(customer_id: int, every_days: int, cutoff) -> CustomerSequence:
    """Return a customer with a purchase every `every_days` in the year to cutoff."""
    cutoff_s = int(cutoff.timestamp())
    occurred_s = np.arange(cutoff_s - 365 * DAY_S, cutoff_s - DAY_S, every_days * DAY_S)
    return CustomerSequence(
        customer_id,
        occurred_s.astype(np.int64),
        np.ones(occurred_s.shape[0], dtype=np.int32),
        np.full(occurred_s.shape[0], 500_000_000, dtype=np.int64),
    )


def forecast(trained, sequences, as_of, window_days: float) -> np.ndarray:
    inputs = trained.predictor.table_inputs(to_event_table(sequences), as_of)
    return trained.predictor.expected_events(inputs, window_days).numpy()


def test_forecast_is_non_negative(trained, sequences, cutoff):
    counts = forecast(trained, sequences, cutoff, window_days=30)

    assert counts.shape == (len(sequences),)
    assert np.all(np.isfinite(counts))
    assert np.all(counts >= 0)


def test_forecast_grows_with_window(trained, sequences, cutoff):
    short = forecast(trained, sequences, cutoff, window_days=7)
    long = forecast(trained, sequences, cutoff, window_days=60)

    assert np.all(long > short)


def test_frequent_customer_gets_higher_forecast(trained, cutoff):
    frequent = regular_customer(1, every_days=3, cutoff=cutoff)
    rare = regular_customer(2, every_days=60, cutoff=cutoff)

    counts = forecast(trained, [frequent, rare], cutoff, window_days=30)

    assert counts[0] > 2 * counts[1]


def test_forecast_total_is_near_observed_total(
    trained, synthetic_customers, cutoff, label_end
):
    # Customers the model never saw, with events through the label window.
    customers = synthetic_customers(400, seed=21)
    cutoff_s, label_end_s = cutoff.timestamp(), label_end.timestamp()
    observed = sum(
        int(((s.occurred_s >= cutoff_s) & (s.occurred_s < label_end_s)).sum())
        for s in customers
    )
    window_days = (label_end - cutoff) / timedelta(days=1)

    counts = forecast(trained, customers, cutoff, window_days)

    assert observed > 0
    assert counts.sum() == pytest.approx(observed, rel=0.25)


def test_window_must_be_positive(trained, sequences, cutoff):
    inputs = trained.predictor.table_inputs(to_event_table(sequences[:2]), cutoff)

    with pytest.raises(ValueError, match="window_days"):
        trained.predictor.expected_events(inputs, 0.0)


def test_scores_include_horizon_forecast(trained, sequences, cutoff):
    batch = score(trained.predictor, sequences, cutoff, batch_size=64)
    direct = forecast(trained, sequences, cutoff, trained.config.horizon_days)

    np.testing.assert_allclose(batch.expected_events, direct, rtol=1e-6)
