"""ChurnPredictor: a trained ChurnModel with its feature statistics and calibration.

This is the unit that training returns, checkpoints store and scoring uses.
"""

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

import numpy as np
import torch

from retain_inference.features import (
    EventTable,
    FeatureBatch,
    FeatureNormalizer,
    build_features,
)
from retain_inference.model import (
    ChurnModel,
    ChurnOutput,
    ModelConfig,
    expected_event_count,
    weibull_mean_days,
)

logger = logging.getLogger(__name__)


class ModelInputs(NamedTuple):
    """Normalised features as tensors, in the argument order of `ChurnModel`."""

    event_types: torch.Tensor  # int64 (B, L)
    event_features: torch.Tensor  # float32 (B, L, F_event)
    static_features: torch.Tensor  # float32 (B, F_static)

    @classmethod
    def from_features(cls, features: FeatureBatch) -> "ModelInputs":
        return cls(
            torch.from_numpy(features.event_types),
            torch.from_numpy(features.event_features),
            torch.from_numpy(features.static_features),
        )

    def rows(self, index: torch.Tensor) -> "ModelInputs":
        """Return the inputs of the customers at `index`."""
        return ModelInputs(*(tensor[index] for tensor in self))


class Prediction(NamedTuple):
    """Predictions for a batch of B customers."""

    output: ChurnOutput  # raw model outputs
    churn_probability: torch.Tensor  # float32 (B,), calibrated
    expected_days: torch.Tensor  # float32 (B,), Weibull mean days to next event
    expected_events: torch.Tensor  # float32 (B,), mean events in horizon_days


@dataclass(frozen=True)
class PlattCalibration:
    """Affine map of the churn logit, fitted on held-out customers.

    The calibrated probability is `sigmoid(slope * logit + intercept)`.
    """

    slope: float = 1.0
    intercept: float = 0.0

    def apply(self, churn_logit: torch.Tensor) -> torch.Tensor:
        return churn_logit * self.slope + self.intercept


@dataclass(frozen=True, eq=False)
class ChurnPredictor:
    """A trained model with what it needs to turn features into scores."""

    model: ChurnModel
    normalizer: FeatureNormalizer
    calibration: PlattCalibration

    @property
    def config(self) -> ModelConfig:
        return self.model.config

    def inputs(self, features: FeatureBatch) -> ModelInputs:
        """Normalise features with the training statistics and convert to tensors."""
        return ModelInputs.from_features(self.normalizer.transform(features))

    def table_inputs(self, table: EventTable, as_of: datetime) -> ModelInputs:
        """Build normalised inputs from the events strictly before `as_of`.

        The result equals `inputs(build_features(...))` but standardises only the
        real events, not the padding.
        """
        features = build_features(
            table,
            as_of,
            max_events=self.config.max_events,
            num_event_types=self.config.num_event_types,
            normalizer=self.normalizer,
        )
        return ModelInputs.from_features(features)

    def predict(self, inputs: ModelInputs) -> Prediction:
        """Run the model in eval mode and calibrate its churn logit."""
        self.model.eval()
        with torch.inference_mode():
            output = self.model(*inputs)
            probability = torch.sigmoid(self.calibration.apply(output.churn_logit))
            return Prediction(
                output,
                probability,
                weibull_mean_days(output),
                expected_event_count(output, self.config.horizon_days),
            )

    def expected_events(self, inputs: ModelInputs, window_days: float) -> torch.Tensor:
        """Forecast each customer's number of events in `window_days` from as_of.

        Returns a float32 tensor of shape (B,). The count head learned the counts
        of `horizon_days` windows, and other windows scale its rate.
        """
        if not window_days > 0:
            raise ValueError(f"window_days must be positive, got {window_days}")
        self.model.eval()
        with torch.inference_mode():
            return expected_event_count(self.model(*inputs), window_days)


def as_numpy(tensor: torch.Tensor) -> np.ndarray:
    """Copy a float tensor to a float64 numpy array."""
    return tensor.detach().to(torch.float64).numpy()
