"""Settings of the inference service process."""

from __future__ import annotations

import socket
from collections.abc import Mapping
from dataclasses import dataclass

from retain_runtime.errors import SettingsError
from retain_runtime.settings import Env, ServiceSettings


@dataclass(frozen=True)
class InferenceSettings:
    """The shared service settings plus scoring and model-writer options."""

    service: ServiceSettings
    torch_threads: int
    # Pages that run through the model at once during a scoring run, each in
    # its own thread with torch_threads intra-op threads.
    forward_workers: int
    score_page_size: int
    score_batch_size: int
    # Seconds between scheduled scoring runs; 0 turns the scheduler off.
    scoring_interval_seconds: float
    # Scoring runs, over equal customer-id ranges, that make one scheduled run.
    scoring_shards: int
    # This replica's id on the jobs it runs. A restarted process fails only the
    # unfinished jobs of its own id, so give each replica an id that is unique
    # and the same across its restarts. Nothing checks that two replicas differ.
    replica_id: str
    # Seconds a job stays taken after its replica last renewed it. The
    # replica renews it every third of that, and any replica fails a job whose
    # lease has expired.
    job_lease_seconds: float = 60.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> InferenceSettings:
        env = Env(environ)
        settings = cls(
            service=ServiceSettings.from_env("inference", environ),
            torch_threads=env.int("RETAIN_TORCH_THREADS", 2),
            forward_workers=env.int("RETAIN_FORWARD_WORKERS", 1),
            score_page_size=env.int("RETAIN_SCORE_PAGE_SIZE", 5000),
            score_batch_size=env.int("RETAIN_SCORE_BATCH_SIZE", 2048),
            scoring_interval_seconds=env.float("RETAIN_SCORING_INTERVAL_SECONDS", 0),
            scoring_shards=env.int("RETAIN_SCORING_SHARDS", 1),
            replica_id=env.str("RETAIN_REPLICA_ID", socket.gethostname()),
            job_lease_seconds=env.float("RETAIN_JOB_LEASE_SECONDS", 60.0),
        )
        settings.check()
        return settings

    def check(self) -> None:
        """Raise SettingsError naming the first variable with a bad value."""
        if self.torch_threads < 1:
            raise SettingsError(
                "RETAIN_TORCH_THREADS", f'"{self.torch_threads}" must be at least 1'
            )
        if not 1 <= self.forward_workers <= 64:
            raise SettingsError(
                "RETAIN_FORWARD_WORKERS",
                f'"{self.forward_workers}" must be from 1 to 64',
            )
        if not 1 <= self.score_page_size <= 10_000:
            raise SettingsError(
                "RETAIN_SCORE_PAGE_SIZE",
                f'"{self.score_page_size}" must be 1 to 10000, the events service\'s'
                " maximum page size",
            )
        if self.score_batch_size < 1:
            raise SettingsError(
                "RETAIN_SCORE_BATCH_SIZE",
                f'"{self.score_batch_size}" must be at least 1',
            )
        if self.scoring_interval_seconds < 0:
            raise SettingsError(
                "RETAIN_SCORING_INTERVAL_SECONDS",
                f'"{self.scoring_interval_seconds:g}" must be 0 (off) or more',
            )
        if not self.replica_id.strip():
            raise SettingsError(
                "RETAIN_REPLICA_ID", "is empty; unset it to use the host name"
            )
        if not 1 <= self.job_lease_seconds <= 86_400:
            raise SettingsError(
                "RETAIN_JOB_LEASE_SECONDS",
                f'"{self.job_lease_seconds:g}" must be from 1 to 86400 seconds',
            )
        if self.scoring_shards < 1:
            raise SettingsError(
                "RETAIN_SCORING_SHARDS", f'"{self.scoring_shards}" must be at least 1'
            )
