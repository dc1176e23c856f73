"""Checkpoints of a ChurnPredictor as bytes or files.

A checkpoint is a `torch.save` archive of plain types and tensors: the format
version, the `ModelConfig` fields, the model's state dict, the feature names and
normalisation statistics, and the Platt calibration. Loading rebuilds the model
from the stored config and reads with `weights_only=True`, so a checkpoint cannot
run code. A loaded predictor returns the same scores as the saved one.
"""

import dataclasses
import io
import logging
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from retain_inference.features import (
    EVENT_FEATURE_NAMES,
    STATIC_FEATURE_NAMES,
    FeatureNormalizer,
)
from retain_inference.model import ChurnModel, ModelConfig
from retain_inference.predictor import ChurnPredictor, PlattCalibration

logger = logging.getLogger(__name__)

# Version 2 added the count head. Older versions cannot load, because a model
# without trained count weights would forecast arbitrary counts.
FORMAT_VERSION = 2


class InvalidCheckpointError(ValueError):
    """Raised when checkpoint data is corrupt, of another format version, or was
    written for features this build does not compute."""


def checkpoint_to_bytes(predictor: ChurnPredictor) -> bytes:
    """Serialise a predictor to checkpoint bytes."""
    buffer = io.BytesIO()
    torch.save(_payload(predictor), buffer)
    return buffer.getvalue()


def checkpoint_from_bytes(data: bytes) -> ChurnPredictor:
    """Rebuild a predictor, in eval mode, from checkpoint bytes."""
    try:
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except (
        pickle.UnpicklingError,
        RuntimeError,
        EOFError,
        OSError,
        ValueError,
    ) as error:
        raise InvalidCheckpointError(f"cannot read checkpoint data: {error}") from error
    if not isinstance(payload, dict):
        raise InvalidCheckpointError(
            f"invalid checkpoint: expected a dict, got a {type(payload).__name__}"
        )
    return _predictor(payload)


def save_checkpoint(predictor: ChurnPredictor, path: str | Path) -> None:
    """Write a checkpoint file, replacing any file at `path` only when complete."""
    path = Path(path)
    data = checkpoint_to_bytes(predictor)
    with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as file:
        file.write(data)
    os.replace(file.name, path)
    logger.info("Saved checkpoint of %d bytes to %s.", len(data), path)


def load_checkpoint(path: str | Path) -> ChurnPredictor:
    """Read a checkpoint file written by `save_checkpoint`."""
    predictor = checkpoint_from_bytes(Path(path).read_bytes())
    logger.info("Loaded checkpoint from %s.", path)
    return predictor


def _payload(predictor: ChurnPredictor) -> dict[str, Any]:
    normalizer = predictor.normalizer
    return {
        "format_version": FORMAT_VERSION,
        "model_config": dataclasses.asdict(predictor.config),
        "state_dict": predictor.model.state_dict(),
        "event_feature_names": list(EVENT_FEATURE_NAMES),
        "static_feature_names": list(STATIC_FEATURE_NAMES),
        "normalizer": {
            field.name: torch.from_numpy(getattr(normalizer, field.name))
            for field in dataclasses.fields(normalizer)
        },
        "calibration": dataclasses.asdict(predictor.calibration),
    }


def _predictor(payload: dict[str, Any]) -> ChurnPredictor:
    version = payload.get("format_version")
    if version != FORMAT_VERSION:
        detail = " (version 1 has no count head)" if version == 1 else ""
        raise InvalidCheckpointError(
            f"checkpoint format version is {version!r}{detail} but this build "
            f"reads version {FORMAT_VERSION}; retrain the model with this build"
        )
    _check_feature_names(payload, "event_feature_names", EVENT_FEATURE_NAMES)
    _check_feature_names(payload, "static_feature_names", STATIC_FEATURE_NAMES)
    try:
        model = ChurnModel(ModelConfig(**payload["model_config"]))
        model.load_state_dict(payload["state_dict"])
        normalizer = FeatureNormalizer(
            **{name: np.asarray(value) for name, value in payload["normalizer"].items()}
        )
        calibration = PlattCalibration(**payload["calibration"])
    except (KeyError, TypeError, RuntimeError) as error:
        raise InvalidCheckpointError(
            f"checkpoint is incomplete or invalid: {error}"
        ) from error
    model.eval()
    return ChurnPredictor(model, normalizer, calibration)


def _check_feature_names(
    payload: dict[str, Any], key: str, expected: tuple[str, ...]
) -> None:
    stored = tuple(payload.get(key, ()))
    if stored != expected:
        raise InvalidCheckpointError(
            f"checkpoint {key} are {list(stored)} but this build computes "
            f"{list(expected)}; retrain the model with this build"
        )
