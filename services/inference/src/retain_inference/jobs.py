"""Long-running jobs: run a coroutine in the background and record its progress."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from retain.type.v1 import job_pb2

from retain_inference.store import Store, lease_end
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
    """Starts jobs as asyncio tasks and keeps a reference until each ends.

    While a job runs, the runner renews its lease every third of
    lease_seconds. With watch_leases started, it also fails the jobs of any
    replica whose leases have expired, such as those of a replica that
    stopped and never came back under its id.
    """

    def __init__(
        self, store: Store, clock: Clock, owner: str, lease_seconds: float = 60.0
    ) -> None:
        self.store = store
        self.clock = clock
        self.owner = owner  # this replica's id, recorded on every job it runs
        self.lease_seconds = lease_seconds
        self.tasks: set[asyncio.Task[None]] = set()
        self._watcher: asyncio.Task[None] | None = None

    def watch_leases(self) -> None:
        """Fail expired jobs of every replica, every half lease, until stop."""
        self._watcher = asyncio.create_task(self._watch_leases())

    async def _watch_leases(self) -> None:
        while True:
            try:
                for job_id, owner in await self.store.fail_expired_jobs(
                    self.clock.now()
                ):
                    log.warning(
                        "Job %s of replica %s failed: its lease expired", job_id, owner
                    )
            except Exception:
                # The next pass tries again, so a missed pass only delays it.
                log.exception("Checking job leases failed")
            await asyncio.sleep(self.lease_seconds / 2)

    async def _renew(self, job_id: str) -> None:
        """Renew a job's lease every third of lease_seconds until cancelled."""
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            try:
                if not await self.store.renew_lease(
                    job_id, self.owner, self.lease_seconds
                ):
                    log.warning(
                        "Job %s is no longer running under replica %s, for example "
                        "because another replica failed it after its lease "
                        "expired; the lease is not renewed",
                        job_id,
                        self.owner,
                    )
                    return
            except Exception:
                log.exception("Renewing the lease of job %s failed", job_id)

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
        if not await self.store.update_job(
            job_id,
            self.clock.now(),
            state=job_pb2.JOB_STATE_RUNNING,
            owner=self.owner,
            lease_expire_time=lease_end(self.lease_seconds),
        ):
            log.warning(
                "Job %s (%s) ended before it started; not running it", job_id, kind
            )
            return
        log.info("Job %s (%s) started", job_id, kind)
        renewing = asyncio.create_task(self._renew(job_id))
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
                message=_failure_message(error),
            )
            return
        finally:
            renewing.cancel()
        if not await self.store.update_job(
            job_id,
            self.clock.now(),
            state=job_pb2.JOB_STATE_SUCCEEDED,
            result_id=result_id,
        ):
            log.warning(
                "Job %s (%s) finished with result %s after it had ended, for "
                "example failed by another replica; it stays as it was",
                job_id,
                kind,
                result_id,
            )
            return
        log.info("Job %s (%s) succeeded with result %s", job_id, kind, result_id)

    async def stop(self) -> None:
        """Cancel running jobs and wait for them to record it."""
        if self._watcher is not None:
            self._watcher.cancel()
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


def _failure_message(error: Exception) -> str:
    """Return one line naming the error, for a failed job's message."""
    if isinstance(error, grpc.aio.AioRpcError):
        # Its str() is a multi-line repr with grpc's debug string.
        return (
            f"a call to another service failed: {error.code().name}: {error.details()}"
        )
    return f"{type(error).__name__}: {error}"
