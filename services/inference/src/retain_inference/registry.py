"""The model registry: training new versions, promotion, rollback, loading.

Checkpoints live in the inference database beside their config, data window
and metrics, so every stored score can name the version that made it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging

from retain_inference.checkpoint import checkpoint_from_bytes, checkpoint_to_bytes
from retain_inference.events_client import EventsClient
from retain_inference.jobs import Progress
from retain_inference.model import ModelConfig
from retain_inference.predictor import ChurnPredictor
from retain_inference.store import READY, ModelRecord, Store
from retain_inference.training import train_model
from retain_runtime.clock import Clock

log = logging.getLogger(__name__)

SEQUENCE_PAGE = 5000


class Registry:
    """Trains, stores, promotes and loads model versions."""

    def __init__(
        self, store: Store, events: EventsClient, clock: Clock, torch_threads: int
    ) -> None:
        self.store = store
        self.events = events
        self.clock = clock
        self.torch_threads = torch_threads
        self._loaded: tuple[str, ChurnPredictor] | None = None

    async def train(
        self,
        progress: Progress,
        cutoff: dt.datetime,
        label_end: dt.datetime,
        seed: int,
        promote: bool,
    ) -> str:
        """Train a version on events before label_end; return its name."""
        sequences = []
        async for page in self.events.sequence_pages(label_end, SEQUENCE_PAGE):
            sequences.extend(page)
            await progress.report(len(sequences), message="reading sequences")
        horizon = (label_end - cutoff).days
        config = ModelConfig(horizon_days=horizon)
        await progress.report(len(sequences), message="training")
        result = await asyncio.to_thread(
            train_model,
            sequences,
            cutoff,
            label_end,
            config,
            seed,
            num_threads=self.torch_threads,
        )
        # Named by data window, seed and registry position, so a fresh run of
        # the same training gets the same name.
        number = await self.store.count_models() + 1
        version = f"gru-{cutoff:%Y%m%d}-{label_end:%Y%m%d}-s{seed}-{number:04d}"
        record = ModelRecord(
            model_version=version,
            status=READY,
            config=dataclasses.asdict(config),
            cutoff_time=cutoff,
            label_end_time=label_end,
            horizon_days=horizon,
            metrics=_finite(dataclasses.asdict(result.metrics)),
            create_time=self.clock.now(),
            promote_time=None,
        )
        await self.store.add_model(record, checkpoint_to_bytes(result.predictor))
        log.info("Model %s trained: %s", version, record.metrics)
        if promote:
            await self.promote(version, "training job")
        return version

    async def promote(self, version: str, by: str) -> ModelRecord:
        await self.store.promote(version, by, self.clock.now())
        log.info("Model %s promoted by %s", version, by)
        return await self.store.get_model(version)

    async def rollback(self, by: str) -> ModelRecord:
        version = await self.store.previous_promotion()
        return await self.promote(version, f"rollback by {by}")

    async def load(self, version: str) -> ChurnPredictor:
        """Return the predictor of version, cached while it stays the same."""
        if self._loaded and self._loaded[0] == version:
            return self._loaded[1]
        predictor = checkpoint_from_bytes(await self.store.checkpoint(version))
        self._loaded = (version, predictor)
        return predictor


def _finite(metrics: dict[str, float]) -> dict[str, float]:
    # JSONB rejects NaN, which a one-class validation slice produces.
    return {k: float(v) for k, v in metrics.items() if v == v}
