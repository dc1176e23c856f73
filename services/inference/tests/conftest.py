"""Fixtures: synthetic customers, a small model config and a trained predictor.

Tests get these through fixtures only, because importing conftest by name breaks
when several services' tests run in one pytest session.
"""

from collections.abc import Callable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from retain_inference.model import ModelConfig
from retain_inference.sequences import CustomerSequence
from retain_inference.training import TrainingConfig, TrainResult, train_model

NAIROBI = ZoneInfo("Africa/Nairobi")
CUTOFF = datetime(2024, 3, 1, tzinfo=NAIROBI)
HORIZON_DAYS = 30
LABEL_END = CUTOFF + timedelta(days=HORIZON_DAYS)
SMALL_CONFIG = ModelConfig(
    max_events=16,
    horizon_days=HORIZON_DAYS,
    num_event_types=4,
    event_embedding_dim=4,
    gru_input_size=8,
    hidden_size=16,
    static_hidden_size=8,
    trunk_size=16,
)
FAST_TRAINING = TrainingConfig(batch_size=64, max_epochs=4, patience=2)


def make_sequences(
    num_customers: int, seed: int, end: datetime = LABEL_END
) -> list[CustomerSequence]:
    """Make customers who buy at their own rate and some of whom stop before `end`.

    Events span the year before CUTOFF up to `end`. About a tenth of the events are
    of type 2, not purchases.
    """
    rng = np.random.default_rng(seed)
    start_s = int((CUTOFF - timedelta(days=365)).timestamp())
    end_s = int(end.timestamp())
    sequences = []
    for customer_id in range(1, num_customers + 1):
        daily_rate = rng.uniform(0.02, 0.4)
        stop_s = min(end_s, start_s + int(rng.uniform(0.2, 1.6) * (end_s - start_s)))
        first_s = start_s + int(rng.uniform(0, 0.5) * (stop_s - start_s))
        count = rng.poisson(daily_rate * (stop_s - first_s) / 86_400)
        occurred_s = np.sort(rng.integers(first_s, stop_s, size=count))
        event_types = np.where(rng.random(count) < 0.1, 2, 1).astype(np.int32)
        amounts_kes = rng.integers(50, 5_000, size=count)
        sequences.append(
            CustomerSequence(
                customer_id=customer_id,
                occurred_s=occurred_s.astype(np.int64),
                event_types=event_types,
                amounts_micros=(amounts_kes * 1_000_000).astype(np.int64),
            )
        )
    return sequences


@pytest.fixture(scope="session")
def cutoff() -> datetime:
    return CUTOFF


@pytest.fixture(scope="session")
def label_end() -> datetime:
    return LABEL_END


@pytest.fixture(scope="session")
def small_config() -> ModelConfig:
    return SMALL_CONFIG


@pytest.fixture(scope="session")
def fast_training() -> TrainingConfig:
    return FAST_TRAINING


@pytest.fixture(scope="session")
def synthetic_customers() -> Callable[..., list[CustomerSequence]]:
    """Return `make_sequences`, for tests that need their own customers."""
    return make_sequences


@pytest.fixture(scope="session")
def sequences() -> list[CustomerSequence]:
    return make_sequences(num_customers=400, seed=7)


@pytest.fixture(scope="session")
def trained(sequences: list[CustomerSequence]) -> TrainResult:
    return train_model(
        sequences,
        CUTOFF,
        LABEL_END,
        SMALL_CONFIG,
        seed=3,
        training=FAST_TRAINING,
        num_threads=1,
    )
