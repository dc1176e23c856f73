"""Scoring runs: score customers page by page, store scores, evaluate a run.

A run reads packed sequences from the events service one page at a time,
scores each page in a worker thread so the gRPC event loop stays free, and
stores the page's scores in one statement. A run may cover a customer-id
range, so several workers can split one scoring moment between them.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import Any

import numpy as np

from retain_inference import metrics
from retain_inference.events_client import EventsClient
from retain_inference.jobs import JobRunner, Progress
from retain_inference.reasons import explain
from retain_inference.registry import Registry
from retain_inference.scoring import ScoreBatch, score
from retain_inference.store import Store
from retain_runtime.errors import FailedPrecondition

log = logging.getLogger(__name__)


class ScoringRuns:
    """Starts, executes and evaluates scoring runs."""

    def __init__(
        self,
        store: Store,
        events: EventsClient,
        registry: Registry,
        jobs: JobRunner,
        page_size: int,
        batch_size: int,
    ) -> None:
        self.store = store
        self.events = events
        self.registry = registry
        self.jobs = jobs
        self.page_size = page_size
        self.batch_size = batch_size

    async def start(
        self, as_of: dt.datetime, min_customer_id: int, max_customer_id: int
    ) -> dict[str, Any]:
        """Record a run with the active model and start scoring in the background."""
        version = await self.store.active_version()
        if version is None:
            raise FailedPrecondition(
                "no model version is active; train one with promote set, or PromoteModel"
            )
        job = await self.jobs.create("scoring_run")
        run_id = await self.store.create_run({
            "model_version": version, "as_of_time": as_of,
            "min_customer_id": min_customer_id, "max_customer_id": max_customer_id,
            "job_id": job["job_id"],
        })

        async def work(progress: Progress) -> str:
            await self._execute(
                run_id, version, as_of, progress, min_customer_id, max_customer_id
            )
            return str(run_id)

        self.jobs.run(job, work)
        log.info("Scoring run %d started as of %s with model %s",
                 run_id, as_of.isoformat(), version)
        return await self.store.get_run(run_id)

    async def _execute(
        self,
        run_id: int,
        version: str,
        as_of: dt.datetime,
        progress: Progress,
        min_customer_id: int,
        max_customer_id: int,
    ) -> None:
        predictor = await self.registry.load(version)
        done = 0
        async for page in self.events.sequence_pages(
            as_of, self.page_size, min_customer_id, max_customer_id
        ):
            if not page:
                continue
            batch = await asyncio.to_thread(
                score, predictor, page, as_of, self.batch_size
            )
            await self.store.add_scores(run_id, _rows(run_id, version, batch))
            done += len(page)
            await progress.report(done, message=f"scored {done} customers")
        await self.store.finish_run(run_id)
        log.info("Scoring run %d finished: %d customers", run_id, done)

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


def _rows(run_id: int, version: str, batch: ScoreBatch) -> list[dict[str, Any]]:
    rows = []
    for index, customer_id in enumerate(batch.customer_ids.tolist()):
        reasons = [
            {
                "code": r.code,
                "params": {k: str(v) for k, v in r.params.items()},
                "text": r.text,
            }
            for r in explain(batch.reason_inputs, index)
        ]
        rows.append(
            {
                "scoring_run_id": run_id,
                "customer_id": customer_id,
                "model_version": version,
                "churn_probability": float(batch.churn_probability[index]),
                "expected_days": float(batch.expected_days_to_next_event[index]),
                "reasons": reasons,
            }
        )
    return rows
