"""Long-running jobs: run a coroutine in the background and record its progress."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from retain.type.v1 import job_pb2

from retain_inference.store import Store
from retain_runtime.clock import Clock

log = logging.getLogger(__name__)

Work = Callable[["Progress"], Awaitable[str]]


class Progress:
    """Handle a job's work uses to report units done."""

    def __init__(self, runner: JobRunner, job_id: str) -> None:
        self.runner = runner
        self.job_id = job_id
        self.done = 0
        self.total = 0

    async def report(self, done: int, total: int = 0, message: str = "") -> None:
        self.done, self.total = done, total or self.total
        await self.runner.store.update_job(
            self.job_id,
            self.runner.clock.now(),
            progress_done=self.done,
            progress_total=self.total,
            message=message,
        )


class JobRunner:
    """Starts jobs as asyncio tasks and keeps a reference until each ends."""

    def __init__(self, store: Store, clock: Clock, owner: str) -> None:
        self.store = store
        self.clock = clock
        self.owner = owner  # this replica's id, recorded on every job it runs
        self.tasks: set[asyncio.Task[None]] = set()

    async def start(self, kind: str, work: Work) -> dict[str, Any]:
        """Record a queued job and run work in the background."""
        job = await self.create(kind)
        self.run(job, work)
        return job

    async def create(self, kind: str) -> dict[str, Any]:
        """Record a queued job, for callers that must store its id first."""
        return await self.store.create_job(kind, self.clock.now(), self.owner)

    def run(self, job: dict[str, Any], work: Work) -> asyncio.Task[None]:
        """Run work in the background as the given job and return its task."""
        task = asyncio.create_task(self._run(job["job_id"], job["kind"], work))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def _run(self, job_id: str, kind: str, work: Work) -> None:
        log.info("Job %s (%s) started", job_id, kind)
        await self.store.update_job(
            job_id, self.clock.now(), state=job_pb2.JOB_STATE_RUNNING, owner=self.owner
        )
        try:
            result_id = await work(Progress(self, job_id))
        except asyncio.CancelledError:
            await self.store.update_job(
                job_id,
                self.clock.now(),
                state=job_pb2.JOB_STATE_CANCELLED,
                message="cancelled because the service stopped",
            )
            raise
        except Exception as error:  # noqa: BLE001 - recorded on the job for the caller
            log.exception("Job %s (%s) failed", job_id, kind)
            await self.store.update_job(
                job_id,
                self.clock.now(),
                state=job_pb2.JOB_STATE_FAILED,
                message=f"{type(error).__name__}: {error}",
            )
            return
        await self.store.update_job(
            job_id,
            self.clock.now(),
            state=job_pb2.JOB_STATE_SUCCEEDED,
            result_id=result_id,
        )
        log.info("Job %s (%s) succeeded with result %s", job_id, kind, result_id)

    async def stop(self) -> None:
        """Cancel running jobs and wait for them to record it."""
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


def to_proto(row: dict[str, Any]) -> job_pb2.Job:
    job = job_pb2.Job(
        job_id=row["job_id"],
        kind=row["kind"],
        state=row["state"],
        progress_done=row["progress_done"],
        progress_total=row["progress_total"],
        message=row["message"],
        result_id=row["result_id"],
    )
    job.create_time.FromDatetime(row["create_time"])
    job.update_time.FromDatetime(row["update_time"])
    return job
