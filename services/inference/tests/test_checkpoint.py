"""Tests of checkpoints: exact round trips and rejection of bad data."""

import io

import numpy as np
import pytest
import torch
from retain_inference.checkpoint import (
    InvalidCheckpointError,
    checkpoint_from_bytes,
    checkpoint_to_bytes,
    load_checkpoint,
    save_checkpoint,
)
from retain_inference.scoring import score


def edited_checkpoint(data: bytes, **changes) -> bytes:
    payload = torch.load(io.BytesIO(data), weights_only=True)
    payload.update(changes)
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


def test_bytes_round_trip_gives_identical_scores(trained, sequences, label_end):
    loaded = checkpoint_from_bytes(checkpoint_to_bytes(trained.predictor))

    before = score(trained.predictor, sequences, label_end)
    after = score(loaded, sequences, label_end)

    np.testing.assert_array_equal(after.churn_probability, before.churn_probability)
    np.testing.assert_array_equal(
        after.expected_days_to_next_event, before.expected_days_to_next_event
    )


def test_file_round_trip_keeps_parameters(trained, tmp_path):
    path = tmp_path / "model.pt"
    save_checkpoint(trained.predictor, path)
    loaded = load_checkpoint(path)

    assert loaded.config == trained.config
    assert loaded.calibration == trained.predictor.calibration
    for name in ("event_mean", "event_std", "static_mean", "static_std"):
        np.testing.assert_array_equal(
            getattr(loaded.normalizer, name),
            getattr(trained.predictor.normalizer, name),
        )
    assert not loaded.model.training


def test_other_format_version_is_rejected(trained):
    data = edited_checkpoint(checkpoint_to_bytes(trained.predictor), format_version=99)

    with pytest.raises(InvalidCheckpointError, match="version is 99"):
        checkpoint_from_bytes(data)


def test_checkpoint_without_count_head_is_rejected(trained):
    data = edited_checkpoint(checkpoint_to_bytes(trained.predictor), format_version=1)

    with pytest.raises(InvalidCheckpointError, match="version 1 has no count head"):
        checkpoint_from_bytes(data)


def test_other_feature_names_are_rejected(trained):
    data = edited_checkpoint(
        checkpoint_to_bytes(trained.predictor), static_feature_names=["old_feature"]
    )

    with pytest.raises(InvalidCheckpointError, match="static_feature_names"):
        checkpoint_from_bytes(data)


def test_unknown_config_field_is_rejected(trained):
    data = checkpoint_to_bytes(trained.predictor)
    config = torch.load(io.BytesIO(data), weights_only=True)["model_config"]

    with pytest.raises(InvalidCheckpointError, match="n_layer"):
        checkpoint_from_bytes(
            edited_checkpoint(data, model_config={**config, "n_layer": 2})
        )


def test_corrupt_bytes_are_rejected():
    with pytest.raises(InvalidCheckpointError, match="cannot read checkpoint"):
        checkpoint_from_bytes(b"not a checkpoint")
