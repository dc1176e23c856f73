"""Scoring runs: score customers page by page, store scores, evaluate a run.

A run reads packed pages of sequences from the events service, scores them
in worker threads so the gRPC event loop stays free, and stores each page's
scores with one COPY. The next pages download while a page is scored, one
page's features are built while RETAIN_FORWARD_WORKERS others run through the
model, and a page's COPY runs while later pages are scored. A run may cover a customer-id
range, so several workers can split one scoring moment between them.

A run does not count its customers before paging, because an exact count reads
every event row once more. Its progress total is the count of the last finished
run over the same customer-id range, an estimate, or 0 (not yet known) for the
first run of a range. The final report sets it to the number scored.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from retain_runtime.errors import FailedPrecondition

from retain_inference import metrics
from retain_inference.events_client import EventsClient
from retain_inference.features import EventTable
from retain_inference.jobs import JobRunner, Progress
from retain_inference.predictor import ChurnPredictor
from retain_inference.registry import Registry
from retain_inference.score_copy import score_lines
from retain_inference.scoring import (
    PreparedPage,
    ScoreBatch,
    StageTimes,
    predict,
    prepare,
)
from retain_inference.store import Store
from retain_inference.tables import SCORING_RUN

log = logging.getLogger(__name__)

# Pages fetched ahead of the one being scored.
PREFETCH_PAGES = 2


@dataclass(frozen=True)
class ScoringOptions:
    page_size: int  # customers per ListSequences page
    batch_size: int  # customers per forward pass
    torch_threads: int  # intra-op threads of each forward worker
    forward_workers: int = 1  # pages running through the model at once


class ScoringRuns:
    """Starts, executes and evaluates scoring runs."""

    def __init__(
        self,
        store: Store,
        events: EventsClient,
        registry: Registry,
        jobs: JobRunner,
        options: ScoringOptions,
    ) -> None:
        self.store = store
        self.events = events
        self.registry = registry
        self.jobs = jobs
        self.options = options

    async def start(
        self, as_of: dt.datetime, min_customer_id: int, max_customer_id: int
    ) -> dict[str, Any]:
        """Record a run with the active model and start scoring in the background."""
        version = await self.store.active_version()
        if version is None:
            raise FailedPrecondition(
                "no model version is active; train one with promote set, or PromoteModel"
            )
        job = await self.jobs.create(SCORING_RUN)
        run_id = await self.store.create_run(
            {
                "model_version": version,
                "as_of_time": as_of,
                "min_customer_id": min_customer_id,
                "max_customer_id": max_customer_id,
                "job_id": job["job_id"],
            }
        )
        run = await self.store.get_run(run_id)
        self.execute(run, job)
        log.info(
            "Scoring run %d started as of %s with model %s",
            run_id,
            as_of.isoformat(),
            version,
        )
        return run

    def execute(self, run: dict[str, Any], job: dict[str, Any]) -> asyncio.Task[None]:
        """Score the run in the background as the given job."""

        async def work(progress: Progress) -> str:
            await self._execute(run, progress)
            return str(run["scoring_run_id"])

        return self.jobs.run(job, work)

    async def _execute(self, run: dict[str, Any], progress: Progress) -> None:
        run_id = run["scoring_run_id"]
        shard = (run["min_customer_id"], run["max_customer_id"])
        predictor = await self.registry.load(run["model_version"])
        started = time.perf_counter()
        expected = await self.store.previous_scored_count(run_id, *shard)
        pipeline = _Pipeline(self, predictor, run, progress, expected)
        pages = prefetched(
            self.events.table_pages(run["as_of_time"], self.options.page_size, *shard),
            pipeline.times,
        )
        try:
            async for table in pages:
                await pipeline.push(table)
            await pipeline.drain()
        finally:
            await pages.aclose()
            await pipeline.close()
        await self.store.finish_run(run_id)
        await progress.report(pipeline.done, pipeline.done, pipeline.message())
        _log_finished(
            run_id, pipeline.done, time.perf_counter() - started, pipeline.times
        )

    async def evaluate(
        self, run_id: int, label_start: dt.datetime, label_end: dt.datetime
    ) -> dict[str, float | int]:
        """Compare a run's churn probabilities with activity in the label window."""
        run = await self.store.get_run(run_id)
        if not run["finished"]:
            raise FailedPrecondition(
                f"scoring run {run_id} has not finished; poll GetScoringRun"
            )
        customer_ids, probabilities = await self.store.run_probabilities(run_id)
        counts = await self.events.event_counts(customer_ids, label_start, label_end)
        churned = (counts == 0).astype(np.int64)
        scores = np.asarray(probabilities)
        return {
            "roc_auc": metrics.roc_auc(churned, scores),
            "pr_auc": metrics.average_precision(churned, scores),
            "customer_count": len(customer_ids),
            "churned_count": int(churned.sum()),
        }


class _Pipeline:
    """The scoring of one run's pages in worker threads, with COPYs in the background.

    The CPU thread builds each page's features, and the forward workers run
    pages through the model, one page each, while the CPU thread prepares the
    next one. A page's rows are formatted in the CPU thread once the model has
    scored it, and stored by a COPY while later pages are scored. Up to one
    prepared page waits for a free forward worker.
    """

    def __init__(
        self,
        runs: ScoringRuns,
        predictor: ChurnPredictor,
        run: dict[str, Any],
        progress: Progress,
        expected: int,
    ) -> None:
        self.runs = runs
        self.predictor = predictor
        self.run = run
        self.progress = progress
        self.expected = expected  # estimated customers in the run, 0 if unknown
        self.times = StageTimes()
        self.done = 0
        prefix = f"scoring-run-{run['scoring_run_id']}"
        self.cpu = ThreadPoolExecutor(1, thread_name_prefix=f"{prefix}-cpu")
        self.forward = ThreadPoolExecutor(
            runs.options.forward_workers, thread_name_prefix=f"{prefix}-forward"
        )
        self.forwarding: deque[asyncio.Future[ScoreBatch]] = deque()
        self.storing: asyncio.Task[None] | None = None

    async def push(self, table: EventTable) -> None:
        """Prepare a page, start its forward pass and store pages the model scored."""
        loop = asyncio.get_running_loop()
        prepared = await loop.run_in_executor(
            self.cpu,
            prepare,
            self.predictor,
            table,
            self.run["as_of_time"],
            self.runs.options.batch_size,
            self.times,
        )
        self.forwarding.append(
            loop.run_in_executor(self.forward, self._predict, prepared)
        )
        while len(self.forwarding) > self.runs.options.forward_workers or (
            self.forwarding and self.forwarding[0].done()
        ):
            await self._store(await self.forwarding.popleft())

    async def drain(self) -> None:
        """Store the last pages and wait for every COPY."""
        while self.forwarding:
            await self._store(await self.forwarding.popleft())
        await self._wait_for_store()

    async def close(self) -> None:
        """Cancel the queued work and wait for the steps that threads are running.

        A thread cannot stop in the middle of a step. Waiting for it keeps a
        forward pass from running after its job has ended.
        """
        if self.storing is not None:
            self.storing.cancel()
            await asyncio.gather(self.storing, return_exceptions=True)
        pools = (self.cpu, self.forward)
        for pool in pools:
            pool.shutdown(wait=False, cancel_futures=True)
        await asyncio.to_thread(_join, pools)

    def message(self) -> str:
        return f"scored {self.done} customers"

    def _predict(self, prepared: PreparedPage) -> ScoreBatch:
        threads = self.runs.options.torch_threads
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        return predict(self.predictor, prepared, self.times)

    def _rows(self, batch: ScoreBatch) -> bytes:
        with self.times.measure("reasons_and_rows"):
            return score_lines(
                self.run["scoring_run_id"], self.run["model_version"], batch
            )

    async def _store(self, batch: ScoreBatch) -> None:
        loop = asyncio.get_running_loop()
        lines = await loop.run_in_executor(self.cpu, self._rows, batch)
        await self._wait_for_store()
        count = len(batch.customer_ids)
        self.storing = asyncio.create_task(
            self.runs.store.copy_scores(self.run["scoring_run_id"], lines, count)
        )
        self.done += count
        # Customers may have joined since the estimate, so it never falls below
        # the count so far.
        total = max(self.expected, self.done) if self.expected else 0
        await self.progress.report(self.done, total, self.message())

    async def _wait_for_store(self) -> None:
        if self.storing is not None:
            with self.times.measure("store_wait"):
                await self.storing
            self.storing = None


async def prefetched(
    pages: AsyncIterator[EventTable], times: StageTimes
) -> AsyncGenerator[EventTable, None]:
    """Yield the non-empty pages while a background task fetches the next ones."""
    queue: asyncio.Queue[EventTable | BaseException | None] = asyncio.Queue(
        PREFETCH_PAGES
    )

    async def fetch() -> None:
        try:
            while True:
                with times.measure("fetch"):
                    page = await anext(pages, None)
                await queue.put(page)
                if page is None:
                    return
        except Exception as error:  # noqa: BLE001 - the consumer raises it again
            await queue.put(error)

    fetcher = asyncio.create_task(fetch())
    try:
        while True:
            with times.measure("fetch_wait"):
                item = await queue.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            if len(item.customer_ids):
                yield item
    finally:
        fetcher.cancel()


def _join(pools: tuple[ThreadPoolExecutor, ...]) -> None:
    for pool in pools:
        pool.shutdown(wait=True)


def _log_finished(run_id: int, done: int, seconds: float, times: StageTimes) -> None:
    stage_seconds = {name: round(value, 3) for name, value in times.seconds.items()}
    stage_cpu = {name: round(value, 3) for name, value in times.cpu_seconds.items()}
    log.info(
        "Scoring run %d finished: %d customers in %.1f s (%.0f per second). "
        "Seconds per stage, which overlap: %s. CPU seconds per stage: %s",
        run_id,
        done,
        seconds,
        done / seconds if seconds else 0.0,
        stage_seconds,
        stage_cpu,
        extra={
            "scoring_run_id": run_id,
            "stage_seconds": stage_seconds,
            "stage_cpu_seconds": stage_cpu,
        },
    )
