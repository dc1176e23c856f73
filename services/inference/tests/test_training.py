"""Tests of training: labels, reproducibility, leakage, calibration and metrics."""

import math
from datetime import timedelta

import numpy as np
import pytest
import torch
from retain_inference.features import to_event_table
from retain_inference.sequences import CustomerSequence
from retain_inference.training import (
    build_targets,
    fit_platt_calibration,
    train_model,
)

DAY_S = 86_400


def train(sequences, cutoff, label_end, config, training, seed=3, num_threads=1):
    return train_model(
        sequences,
        cutoff,
        label_end,
        config,
        seed,
        training=training,
        num_threads=num_threads,
    )


def state_dicts_equal(first: torch.nn.Module, second: torch.nn.Module) -> bool:
    first_state, second_state = first.state_dict(), second.state_dict()
    return first_state.keys() == second_state.keys() and all(
        torch.equal(first_state[key], second_state[key]) for key in first_state
    )


def test_targets_use_half_open_window():
    cutoff_s, label_end_s = 100 * DAY_S, 130 * DAY_S
    times = {
        1: [90 * DAY_S, cutoff_s],  # event exactly at the cutoff
        2: [90 * DAY_S, label_end_s],  # event exactly at the label end
        3: [90 * DAY_S, 95 * DAY_S, 112 * DAY_S, 120 * DAY_S],
        4: [90 * DAY_S],
    }
    sequences = [
        CustomerSequence(
            customer_id,
            np.array(occurred, dtype=np.int64),
            np.ones(len(occurred), dtype=np.int32),
            np.zeros(len(occurred), dtype=np.int64),
        )
        for customer_id, occurred in times.items()
    ]

    targets = build_targets(to_event_table(sequences), cutoff_s, label_end_s)

    assert targets.churned.tolist() == [0, 1, 0, 1]
    assert targets.observed.tolist() == [True, False, True, False]
    assert targets.days_to_next.tolist() == [0, 30, 12, 30]
    assert targets.window_events.tolist() == [1, 0, 2, 0]


def test_training_reports_plausible_metrics(trained, sequences, cutoff):
    metrics = trained.metrics
    cutoff_s = cutoff.timestamp()
    eligible = sum(
        1 for s in sequences if len(s.occurred_s) and s.occurred_s[0] < cutoff_s
    )

    assert metrics.train_customers + metrics.val_customers == eligible
    assert 0.1 <= metrics.val_customers / eligible <= 0.2
    assert 1 <= metrics.best_epoch <= metrics.epochs
    assert 0 < metrics.train_log_loss < math.log(2)
    assert 0 < metrics.val_log_loss < math.log(2)
    assert 0.6 < metrics.val_roc_auc <= 1
    assert 0 < metrics.churn_rate < 1
    assert metrics.seconds > 0
    assert trained.config is trained.predictor.config


def test_same_seed_gives_identical_weights(
    trained, sequences, cutoff, label_end, small_config, fast_training
):
    again = train(sequences, cutoff, label_end, small_config, fast_training)

    assert state_dicts_equal(again.predictor.model, trained.predictor.model)
    assert again.predictor.calibration == trained.predictor.calibration
    assert again.metrics.val_log_loss == trained.metrics.val_log_loss


def test_other_seed_gives_other_weights(
    trained, sequences, cutoff, label_end, small_config, fast_training
):
    other = train(sequences, cutoff, label_end, small_config, fast_training, seed=4)

    assert not state_dicts_equal(other.predictor.model, trained.predictor.model)


def test_late_events_leave_training_unchanged(
    trained, sequences, cutoff, label_end, small_config, fast_training
):
    late_s = int((label_end + timedelta(days=1)).timestamp())
    with_late_events = [
        CustomerSequence(
            s.customer_id,
            np.append(s.occurred_s, [late_s, late_s + DAY_S]),
            np.append(s.event_types, [1, 2]).astype(np.int32),
            np.append(s.amounts_micros, [10**9, 0]),
        )
        for s in sequences
    ]

    again = train(with_late_events, cutoff, label_end, small_config, fast_training)

    assert state_dicts_equal(again.predictor.model, trained.predictor.model)


def test_training_restores_torch_settings(
    sequences, cutoff, label_end, small_config, fast_training
):
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    rng_state = torch.random.get_rng_state()

    train(
        sequences[:100], cutoff, label_end, small_config, fast_training, num_threads=2
    )

    assert torch.get_num_threads() == threads
    assert torch.are_deterministic_algorithms_enabled() == deterministic
    assert torch.equal(torch.random.get_rng_state(), rng_state)


def test_label_window_must_equal_horizon(
    sequences, cutoff, small_config, fast_training
):
    label_end = cutoff + timedelta(days=small_config.horizon_days + 1)

    with pytest.raises(ValueError, match="lasts 31 days but ModelConfig.horizon_days"):
        train(sequences, cutoff, label_end, small_config, fast_training)


def test_too_few_customers_are_rejected(
    sequences, cutoff, label_end, small_config, fast_training
):
    with pytest.raises(ValueError, match="cannot hold out"):
        train(sequences[:2], cutoff, label_end, small_config, fast_training)


def test_platt_calibration_recovers_known_map():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(20_000, generator=generator) * 2
    labels = torch.bernoulli(torch.sigmoid(2 * logits - 1), generator=generator)

    calibration = fit_platt_calibration(logits, labels)

    assert calibration.slope == pytest.approx(2, abs=0.1)
    assert calibration.intercept == pytest.approx(-1, abs=0.1)
