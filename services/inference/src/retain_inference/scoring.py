"""Batch scoring: churn probability, expected days and events, and reason inputs.

`score` and `score_table` read only events strictly before `as_of`, build
features in chunks of `batch_size` customers so that memory stays bounded, and
run the model under `torch.inference_mode()`. They are `prepare` and then
`predict`, which a scoring run calls in separate threads so that one page's
features are built while earlier pages run through the model.
"""

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from retain_inference.features import EventTable, to_event_table
from retain_inference.predictor import ChurnPredictor, ModelInputs, as_numpy
from retain_inference.reasons import ReasonInputs, compute_reason_inputs
from retain_inference.sequences import CustomerSequence

logger = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class ScoreBatch:
    """Scores of many customers, one row each, in the order they were given."""

    as_of: datetime
    horizon_days: int
    customer_ids: np.ndarray  # int64 (B,)
    # Calibrated probability of no event in [as_of, as_of + horizon_days).
    churn_probability: np.ndarray  # float64 (B,)
    # Mean of the predicted Weibull gap from as_of to the next event.
    expected_days_to_next_event: np.ndarray  # float64 (B,)
    # Forecast number of events in [as_of, as_of + horizon_days).
    expected_events: np.ndarray  # float64 (B,)
    reason_inputs: ReasonInputs


class StageTimes:
    """Wall and CPU seconds spent in each named stage, summed over calls.

    The CPU seconds are those of the calling thread, which tell apart a stage
    that computes from one that waits or shares a busy machine.
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.cpu_seconds: dict[str, float] = {}
        self._lock = threading.Lock()  # several threads may measure one stage

    @contextmanager
    def measure(self, stage: str) -> Iterator[None]:
        started, cpu_started = time.perf_counter(), time.thread_time()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - started
            cpu = time.thread_time() - cpu_started
            with self._lock:
                self.seconds[stage] = self.seconds.get(stage, 0.0) + elapsed
                self.cpu_seconds[stage] = self.cpu_seconds.get(stage, 0.0) + cpu


def score(
    predictor: ChurnPredictor,
    sequences: list[CustomerSequence],
    as_of: datetime,
    batch_size: int = 2048,
) -> ScoreBatch:
    """Score each customer from the events strictly before `as_of`."""
    return score_table(predictor, to_event_table(sequences), as_of, batch_size)


def score_table(
    predictor: ChurnPredictor,
    table: EventTable,
    as_of: datetime,
    batch_size: int = 2048,
    times: StageTimes | None = None,
) -> ScoreBatch:
    """Score each customer of `table` from the events strictly before `as_of`."""
    return predict(
        predictor, prepare(predictor, table, as_of, batch_size, times), times
    )


@dataclass(frozen=True, eq=False)
class PreparedPage:
    """Model inputs of many customers, in batches, with their reason inputs."""

    as_of: datetime
    customer_ids: np.ndarray  # int64 (B,)
    batches: list[ModelInputs]  # batch_size customers each, the last one fewer
    reason_inputs: ReasonInputs


def prepare(
    predictor: ChurnPredictor,
    table: EventTable,
    as_of: datetime,
    batch_size: int = 2048,
    times: StageTimes | None = None,
) -> PreparedPage:
    """Build normalised model inputs and reason inputs, without running the model."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    times = times or StageTimes()
    num_customers = table.customer_ids.shape[0]
    batches = []
    with times.measure("features"):
        for start in range(0, num_customers, batch_size):
            stop = min(start + batch_size, num_customers)
            customers = table.select_customers(start, stop)
            batches.append(predictor.table_inputs(customers, as_of))
    with times.measure("reason_inputs"):
        reason_inputs = compute_reason_inputs(table, as_of)
    return PreparedPage(as_of, table.customer_ids, batches, reason_inputs)


def predict(
    predictor: ChurnPredictor, page: PreparedPage, times: StageTimes | None = None
) -> ScoreBatch:
    """Run the model over a prepared page."""
    times = times or StageTimes()
    num_customers = page.customer_ids.shape[0]
    probability = np.zeros(num_customers)
    expected_days = np.zeros(num_customers)
    expected_events = np.zeros(num_customers)
    start = 0
    with times.measure("forward"):
        for inputs in page.batches:
            stop = start + inputs.event_types.shape[0]
            prediction = predictor.predict(inputs)
            probability[start:stop] = as_numpy(prediction.churn_probability)
            expected_days[start:stop] = as_numpy(prediction.expected_days)
            expected_events[start:stop] = as_numpy(prediction.expected_events)
            start = stop
    logger.debug("Scored %d customers.", num_customers)
    return ScoreBatch(
        as_of=page.as_of,
        horizon_days=predictor.config.horizon_days,
        customer_ids=page.customer_ids,
        churn_probability=probability,
        expected_days_to_next_event=expected_days,
        expected_events=expected_events,
        reason_inputs=page.reason_inputs,
    )
