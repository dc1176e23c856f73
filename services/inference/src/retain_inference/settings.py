"""Settings of the inference service process."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from retain_runtime.settings import Env, ServiceSettings


@dataclass(frozen=True)
class InferenceSettings:
    """The shared service settings plus scoring and model-writer options."""

    service: ServiceSettings
    torch_threads: int
    score_page_size: int
    score_batch_size: int

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> InferenceSettings:
        env = Env(environ)
        return cls(
            service=ServiceSettings.from_env("inference", environ),
            torch_threads=env.int("RETAIN_TORCH_THREADS", 2),
            score_page_size=env.int("RETAIN_SCORE_PAGE_SIZE", 5000),
            score_batch_size=env.int("RETAIN_SCORE_BATCH_SIZE", 2048),
        )
