"""Training of ChurnModel on a past cut-off, with early stopping and calibration.

`train_model` builds features from the events before `cutoff` and labels from the
events in [cutoff, label_end). A customer churned when no event falls in that
window. The time-to-event head learns the gap from `cutoff` to the next event,
censored at `label_end`, and the count head learns the number of events in the
window. A seeded random slice of the customers is held out to stop
training early and to fit the Platt calibration.
"""

import copy
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import torch
from torch.nn import functional as F

from retain_inference.features import (
    SECONDS_PER_DAY,
    EventTable,
    FeatureBatch,
    FeatureNormalizer,
    build_features,
    to_event_table,
    unix_seconds,
)
from retain_inference.metrics import roc_auc
from retain_inference.model import (
    ChurnModel,
    ModelConfig,
    count_log_likelihood,
    weibull_log_likelihood,
)
from retain_inference.predictor import ChurnPredictor, ModelInputs, PlattCalibration
from retain_inference.sequences import CustomerSequence

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingConfig:
    """Optimisation settings, separate from the model's constructor arguments."""

    batch_size: int = 256
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    max_epochs: int = 30
    patience: int = 3  # epochs without a better validation log loss before stopping
    validation_fraction: float = 0.15
    time_to_event_weight: float = 0.1  # weight of the Weibull loss beside churn BCE
    count_weight: float = 0.1  # weight of the negative binomial count loss

    def __post_init__(self) -> None:
        if not 0.05 <= self.validation_fraction <= 0.5:
            raise ValueError(
                "TrainingConfig.validation_fraction must be in [0.05, 0.5], "
                f"got {self.validation_fraction}"
            )
        for name in ("batch_size", "max_epochs", "patience"):
            if getattr(self, name) < 1:
                raise ValueError(
                    f"TrainingConfig.{name} must be at least 1, got {getattr(self, name)}"
                )


@dataclass(frozen=True)
class TrainMetrics:
    """Results of one training run. Log losses are of calibrated probabilities.

    The validation slice also chose the best epoch and fitted the calibration, so
    its log loss and ROC AUC are somewhat optimistic.
    """

    train_log_loss: float
    val_log_loss: float
    val_roc_auc: float  # nan when the validation slice has only one class
    epochs: int  # epochs run, including those after the best one
    best_epoch: int  # 1-based epoch whose weights were kept
    seconds: float  # wall-clock time of the whole call
    train_customers: int
    val_customers: int
    churn_rate: float  # share of all trained-on customers labelled churned


@dataclass(frozen=True, eq=False)
class TrainResult:
    """A trained predictor with its model config and metrics."""

    predictor: ChurnPredictor
    config: ModelConfig
    metrics: TrainMetrics


@dataclass(frozen=True, eq=False)
class Targets:
    """Training labels of each customer, from the events in [cutoff, label_end)."""

    churned: torch.Tensor  # float32 (N,), 1 when no event in [cutoff, label_end)
    days_to_next: torch.Tensor  # float32 (N,), days from cutoff to the next event
    observed: torch.Tensor  # bool (N,), False when censored at label_end
    window_events: torch.Tensor  # float32 (N,), events in [cutoff, label_end)


@dataclass(frozen=True, eq=False)
class _Split:
    train: torch.Tensor  # int64 (N_train,), row numbers
    val: torch.Tensor  # int64 (N_val,), row numbers
    generator: torch.Generator = field(repr=False)


def train_model(
    sequences: list[CustomerSequence],
    cutoff: datetime,
    label_end: datetime,
    config: ModelConfig,
    seed: int,
    *,
    training: TrainingConfig | None = None,
    num_threads: int = 1,
) -> TrainResult:
    """Train and calibrate a ChurnPredictor on customers with events before `cutoff`.

    `label_end - cutoff` must equal `config.horizon_days`. With the same data, seed
    and `num_threads`, two runs return identical weights. The call sets torch's
    seed, thread count and deterministic mode, and restores them when it returns.
    NOTE: these torch settings are process-wide, so other threads run under them
    while training runs.
    """
    training = training or TrainingConfig()
    if num_threads < 1:
        raise ValueError(f"num_threads must be at least 1, got {num_threads}")
    started = time.perf_counter()
    cutoff_s, label_end_s = _check_label_window(cutoff, label_end, config)

    with _reproducible_torch(seed, num_threads):
        customers = [
            s for s in sequences if len(s.occurred_s) and s.occurred_s[0] < cutoff_s
        ]
        table = to_event_table(customers)
        targets = build_targets(table, cutoff_s, label_end_s)
        features = build_features(
            table,
            cutoff,
            max_events=config.max_events,
            num_event_types=config.num_event_types,
        )
        split = _split_rows(len(customers), training.validation_fraction, seed)
        logger.info(
            "Training on %d customers with %d held out, churn rate %.3f.",
            split.train.shape[0],
            split.val.shape[0],
            float(targets.churned.mean()),
        )
        normalizer = FeatureNormalizer.fit(_feature_rows(features, split.train))
        inputs = ModelInputs.from_features(normalizer.transform(features))
        model = ChurnModel(config)
        epochs, best_epoch = _fit(model, inputs, targets, split, training)
        predictor, quality = _calibrate_and_measure(
            model, normalizer, inputs, targets, split, training.batch_size
        )

    metrics = TrainMetrics(
        **quality,
        epochs=epochs,
        best_epoch=best_epoch,
        seconds=time.perf_counter() - started,
        train_customers=int(split.train.shape[0]),
        val_customers=int(split.val.shape[0]),
        churn_rate=float(targets.churned.mean()),
    )
    logger.info("Training finished: %s.", metrics)
    return TrainResult(predictor=predictor, config=config, metrics=metrics)


def _check_label_window(
    cutoff: datetime, label_end: datetime, config: ModelConfig
) -> tuple[float, float]:
    cutoff_s, label_end_s = unix_seconds(cutoff), unix_seconds(label_end)
    window_days = (label_end_s - cutoff_s) / SECONDS_PER_DAY
    if window_days != config.horizon_days:
        raise ValueError(
            f"label window {cutoff.isoformat()} to {label_end.isoformat()} lasts "
            f"{window_days:g} days but ModelConfig.horizon_days is "
            f"{config.horizon_days}; make them equal"
        )
    return cutoff_s, label_end_s


@contextmanager
def _reproducible_torch(seed: int, num_threads: int) -> Iterator[None]:
    """Seed torch, fix its thread count and make it deterministic, then restore."""
    previous_threads = torch.get_num_threads()
    previous_deterministic = torch.are_deterministic_algorithms_enabled()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.set_num_threads(num_threads)
        torch.use_deterministic_algorithms(True)
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(previous_deterministic)
            torch.set_num_threads(previous_threads)


def build_targets(table: EventTable, cutoff_s: float, label_end_s: float) -> Targets:
    """Label each customer from their first event in [cutoff, label_end)."""
    in_window = (table.occurred_s >= cutoff_s) & (table.occurred_s < label_end_s)
    window = table.select_events(in_window)
    observed = window.counts > 0  # (N,)
    next_s = np.full(observed.shape[0], label_end_s)
    next_s[observed] = window.occurred_s[window.offsets[:-1][observed]]
    return Targets(
        churned=torch.from_numpy((~observed).astype(np.float32)),
        days_to_next=torch.from_numpy(
            ((next_s - cutoff_s) / SECONDS_PER_DAY).astype(np.float32)
        ),
        observed=torch.from_numpy(observed),
        window_events=torch.from_numpy(window.counts.astype(np.float32)),
    )


def _split_rows(num_rows: int, validation_fraction: float, seed: int) -> _Split:
    num_val = round(num_rows * validation_fraction)
    if num_val < 1 or num_val >= num_rows:
        raise ValueError(
            f"cannot hold out {validation_fraction:.0%} of {num_rows} customers with "
            "events before the cutoff; train on more customers"
        )
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(num_rows, generator=generator)
    return _Split(
        train=order[num_val:].sort().values,
        val=order[:num_val].sort().values,
        generator=generator,
    )


def _feature_rows(features: FeatureBatch, rows: torch.Tensor) -> FeatureBatch:
    index = rows.numpy()
    return FeatureBatch(
        customer_ids=features.customer_ids[index],
        event_types=features.event_types[index],
        event_features=features.event_features[index],
        static_features=features.static_features[index],
    )


def _fit(
    model: ChurnModel,
    inputs: ModelInputs,
    targets: Targets,
    split: _Split,
    training: TrainingConfig,
) -> tuple[int, int]:
    """Train with early stopping on validation log loss and keep the best weights.

    Returns the number of epochs run and the 1-based best epoch.
    """
    optimizer = torch.optim.AdamW(
        model.parameters(),
        lr=training.learning_rate,
        weight_decay=training.weight_decay,
    )
    best_loss, best_epoch = float("inf"), 0
    best_state = copy.deepcopy(model.state_dict())
    for epoch in range(1, training.max_epochs + 1):
        train_loss = _train_epoch(model, optimizer, inputs, targets, split, training)
        logits = _churn_logits(model, inputs, split.val, training.batch_size)
        val_loss = _log_loss(logits, targets.churned[split.val])
        logger.debug(
            "Epoch %d: train loss %.4f, validation log loss %.4f.",
            epoch,
            train_loss,
            val_loss,
        )
        if val_loss < best_loss:
            best_loss, best_epoch = val_loss, epoch
            best_state = copy.deepcopy(model.state_dict())
        elif epoch - best_epoch >= training.patience:
            break

    model.load_state_dict(best_state)
    model.eval()
    return epoch, best_epoch


def _train_epoch(
    model: ChurnModel,
    optimizer: torch.optim.Optimizer,
    inputs: ModelInputs,
    targets: Targets,
    split: _Split,
    training: TrainingConfig,
) -> float:
    """Run one pass over the training rows in a seeded random order."""
    model.train()
    order = split.train[torch.randperm(split.train.shape[0], generator=split.generator)]
    total = 0.0
    for batch in torch.split(order, training.batch_size):
        output = model(*inputs.rows(batch))
        churn_loss = F.binary_cross_entropy_with_logits(
            output.churn_logit, targets.churned[batch]
        )
        time_loss = -weibull_log_likelihood(
            output, targets.days_to_next[batch], targets.observed[batch]
        ).mean()
        count_loss = -count_log_likelihood(
            output, targets.window_events[batch], model.config.horizon_days
        ).mean()
        loss = (
            churn_loss
            + training.time_to_event_weight * time_loss
            + training.count_weight * count_loss
        )

        optimizer.zero_grad(set_to_none=True)
        torch.autograd.backward(loss)
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
        optimizer.step()
        total += loss.item() * batch.shape[0]
    return total / order.shape[0]


def _churn_logits(
    model: ChurnModel, inputs: ModelInputs, rows: torch.Tensor, batch_size: int
) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        logits = [
            model(*inputs.rows(batch)).churn_logit
            for batch in torch.split(rows, batch_size)
        ]
    return torch.cat(logits)  # (len(rows),)


def _log_loss(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return float(F.binary_cross_entropy_with_logits(logits, labels))


def fit_platt_calibration(
    logits: torch.Tensor, labels: torch.Tensor
) -> PlattCalibration:
    """Fit slope and intercept of the calibrated logit by Newton's method.

    The loss is the log loss plus a small L2 penalty, which keeps the fit finite
    when the logits separate the classes.
    """
    x = np.stack([logits.numpy().astype(np.float64), np.ones(logits.shape[0])], 1)
    y = labels.numpy().astype(np.float64)  # (N,)
    penalty = 1e-3 * np.eye(2)
    weights = np.array([1.0, 0.0])  # slope, intercept
    for _ in range(100):
        probability = 0.5 * (1 + np.tanh(x @ weights / 2))  # stable sigmoid, (N,)
        gradient = x.T @ (probability - y) + penalty @ weights  # (2,)
        curvature = probability * (1 - probability)  # (N,)
        hessian = (x * curvature[:, None]).T @ x + penalty  # (2, 2)
        step = np.linalg.solve(hessian, gradient)
        weights -= step
        if np.abs(step).max() < 1e-9:
            break
    return PlattCalibration(slope=float(weights[0]), intercept=float(weights[1]))


def _calibrate_and_measure(
    model: ChurnModel,
    normalizer: FeatureNormalizer,
    inputs: ModelInputs,
    targets: Targets,
    split: _Split,
    batch_size: int,
) -> tuple[ChurnPredictor, dict[str, float]]:
    """Fit the calibration on the validation slice and measure calibrated losses."""
    val_logits = _churn_logits(model, inputs, split.val, batch_size)
    val_labels = targets.churned[split.val]
    calibration = fit_platt_calibration(val_logits, val_labels)
    train_logits = _churn_logits(model, inputs, split.train, batch_size)
    quality = {
        "train_log_loss": _log_loss(
            calibration.apply(train_logits), targets.churned[split.train]
        ),
        "val_log_loss": _log_loss(calibration.apply(val_logits), val_labels),
        "val_roc_auc": roc_auc(
            val_labels.numpy(), calibration.apply(val_logits).numpy()
        ),
    }
    return ChurnPredictor(model, normalizer, calibration), quality
