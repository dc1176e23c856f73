"""Batch scoring: churn probability, expected days to the next event and reason inputs.

`score` reads only events strictly before `as_of`, builds features in chunks of
`batch_size` customers so that memory stays bounded, and runs the model under
`torch.inference_mode()`.
"""

import logging
import time
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from retain_inference.features import build_features, to_event_table
from retain_inference.predictor import ChurnPredictor, as_numpy
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
    reason_inputs: ReasonInputs


def score(
    predictor: ChurnPredictor,
    sequences: list[CustomerSequence],
    as_of: datetime,
    batch_size: int = 2048,
) -> ScoreBatch:
    """Score each customer from the events strictly before `as_of`."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    started = time.perf_counter()
    config = predictor.config
    table = to_event_table(sequences)
    num_customers = table.customer_ids.shape[0]
    probability = np.zeros(num_customers)
    expected_days = np.zeros(num_customers)

    for start in range(0, num_customers, batch_size):
        stop = min(start + batch_size, num_customers)
        features = build_features(
            table.select_customers(start, stop),
            as_of,
            max_events=config.max_events,
            num_event_types=config.num_event_types,
        )
        prediction = predictor.predict(predictor.inputs(features))
        probability[start:stop] = as_numpy(prediction.churn_probability)
        expected_days[start:stop] = as_numpy(prediction.expected_days)

    logger.debug(
        "Scored %d customers in %.3f s.", num_customers, time.perf_counter() - started
    )
    return ScoreBatch(
        as_of=as_of,
        horizon_days=config.horizon_days,
        customer_ids=table.customer_ids,
        churn_probability=probability,
        expected_days_to_next_event=expected_days,
        reason_inputs=compute_reason_inputs(table, as_of),
    )
