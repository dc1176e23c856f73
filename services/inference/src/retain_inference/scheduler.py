"""Scheduled scoring: one scoring run per interval, however many replicas run.

Every replica runs a ScoringScheduler when RETAIN_SCORING_INTERVAL_SECONDS is
above 0. Intervals are aligned to the Unix epoch on the service clock, so all
replicas agree where an interval starts. At most once a second each replica:

1. Schedules. When the clock has entered an interval that this replica has not
   handled yet, it tries `pg_try_advisory_lock` on a connection of its own. The
   replica that gets the lock records the interval with one queued run per
   shard, as of the clock's now, and keeps the lock until those runs end or the
   next interval starts. The interval's start is a primary key, so a second
   replica that gets the lock later finds the interval recorded and adds
   nothing. Replicas that find the lock taken try again on their next tick.
2. Claims. It takes the oldest queued scheduled run, if any, and executes it.
   Any replica may claim any shard, and each runs one at a time.

RETAIN_SCORING_SHARDS=N splits each scheduled run into N runs over equal
customer-id ranges between the lowest and the highest customer id that
CountSequences reports. The first range starts at 0 and the last has no upper
bound, so customers that appear meanwhile are scored too. To shard by hand
instead, call StartScoringRun once per (min_customer_id, max_customer_id).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import psycopg
import sqlalchemy as sa
from retain_runtime.clock import Clock

from retain_inference.events_client import EventsClient
from retain_inference.runs import ScoringRuns
from retain_inference.schedule_store import ScheduleStore

log = logging.getLogger(__name__)

LOCK_NAME = "retain.inference.scoring_scheduler"
MAX_TICK_SECONDS = 1.0
# Errors after which a tick is retried instead of stopping the scheduler.
RETRIED_ERRORS = (sa.exc.SQLAlchemyError, psycopg.Error, grpc.aio.AioRpcError, OSError)


def slot_start(now: dt.datetime, interval_seconds: float) -> dt.datetime:
    """Return the start of the interval that contains now."""
    index = now.timestamp() // interval_seconds
    return dt.datetime.fromtimestamp(index * interval_seconds, dt.UTC)


def shard_ranges(first: int, last: int, shards: int) -> list[tuple[int, int]]:
    """Split customer ids first to last into at most `shards` equal ranges.

    The first range starts at 0 and the last ends at 0, which means no bound.
    """
    span = last - first + 1
    bounds = [first + span * k // shards for k in range(shards + 1)]
    ranges = [(low, high - 1) for low, high in itertools.pairwise(bounds) if high > low]
    ranges[0] = (0, ranges[0][1])
    ranges[-1] = (ranges[-1][0], 0)
    return ranges


class AdvisoryLock:
    """A PostgreSQL session advisory lock on a connection of its own.

    PostgreSQL releases the lock when the connection ends, so a replica that
    dies while it holds the lock does not block the others.
    """

    def __init__(self, conninfo: str, name: str) -> None:
        self.conninfo = conninfo
        self.name = name
        self.conn: psycopg.AsyncConnection[Any] | None = None

    async def try_acquire(self) -> bool:
        if self.conn is None or self.conn.closed:
            self.conn = await psycopg.AsyncConnection.connect(
                self.conninfo, autocommit=True
            )
        cursor = await self.conn.execute(
            "SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (self.name,)
        )
        row = await cursor.fetchone()
        return bool(row and row[0])

    async def release(self) -> None:
        if self.conn is not None and not self.conn.closed:
            await self.conn.execute(
                "SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (self.name,)
            )

    async def close(self) -> None:
        if self.conn is not None:
            await self.conn.close()


class ScoringScheduler:
    """A replica's scheduler: records each interval's runs and claims queued ones."""

    def __init__(
        self,
        runs: ScoringRuns,
        schedule: ScheduleStore,
        events: EventsClient,
        clock: Clock,
        lock: AdvisoryLock,
        interval_seconds: float,
        shards: int,
    ) -> None:
        self.runs = runs
        self.schedule = schedule
        self.events = events
        self.clock = clock
        self.lock = lock
        self.interval_seconds = interval_seconds
        self.shards = shards
        self.tick_seconds = min(MAX_TICK_SECONDS, interval_seconds / 20)
        # The last interval this replica recorded or found recorded, and how
        # many times it has checked the clock, for tests and debugging.
        self.handled_slot: dt.datetime | None = None
        self.schedule_ticks = 0
        self.tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self.tasks = [
            asyncio.create_task(self._every_tick(self._schedule_once, "schedule")),
            asyncio.create_task(self._every_tick(self._claim_once, "claim")),
        ]
        for task in self.tasks:
            task.add_done_callback(_log_crash)
        log.info(
            "Scoring scheduler started: every %g s in %d shard(s)",
            self.interval_seconds,
            self.shards,
        )

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.lock.close()
        log.info("Scoring scheduler stopped")

    async def _every_tick(self, step: Callable[[], Awaitable[bool]], name: str) -> None:
        """Call step until cancelled, sleeping a tick after each call that did nothing."""
        failures = 0
        while True:
            try:
                busy = await step()
            except RETRIED_ERRORS:
                failures += 1
                busy = False
                # One line at the first failure and then once a minute or so.
                if failures % 60 == 1:
                    log.exception(
                        "Scoring scheduler %s step failed %d time(s) in a row; "
                        "retrying every tick",
                        name,
                        failures,
                    )
            else:
                if failures:
                    log.info(
                        "Scoring scheduler %s step works again after %d failures",
                        name,
                        failures,
                    )
                failures = 0
            if not busy:
                await asyncio.sleep(self.tick_seconds)

    async def _schedule_once(self) -> bool:
        self.schedule_ticks += 1
        slot = slot_start(self.clock.now(), self.interval_seconds)
        if slot == self.handled_slot or not await self.lock.try_acquire():
            return False
        try:
            run_ids = await self._record(slot)
            self.handled_slot = slot
            if run_ids:
                await self._wait_for_runs(slot)
        finally:
            await self.lock.release()
        return False

    async def _record(self, slot: dt.datetime) -> list[int]:
        """Record the interval with its queued runs, unless a replica did so first."""
        version = await self.runs.store.active_version()
        if version is None:
            log.warning(
                "Scheduled scoring for %s skipped: no model version is active",
                slot.isoformat(),
            )
            return []
        as_of = self.clock.now()
        shards = await self._shards(as_of)
        run_ids = await self.schedule.record_slot(
            slot, as_of, version, shards, self.clock.now()
        )
        if run_ids:
            log.info(
                "Scheduled scoring for %s as of %s with model %s: runs %s",
                slot.isoformat(),
                as_of.isoformat(),
                version,
                run_ids,
            )
        return run_ids

    async def _shards(self, as_of: dt.datetime) -> list[tuple[int, int]]:
        if self.shards == 1:
            return [(0, 0)]
        count = await self.events.count_customers(as_of)
        if count.customer_count == 0:
            return [(0, 0)]
        return shard_ranges(
            count.first_customer_id, count.last_customer_id, self.shards
        )

    async def _wait_for_runs(self, slot: dt.datetime) -> None:
        """Hold the lock until the interval's runs end or the next interval starts."""
        while await self.schedule.unfinished_runs(slot):
            if slot_start(self.clock.now(), self.interval_seconds) != slot:
                log.warning(
                    "Scheduled scoring for %s still has unfinished runs as the next "
                    "interval starts; scheduling goes on without waiting for them",
                    slot.isoformat(),
                )
                return
            await asyncio.sleep(self.tick_seconds)

    async def _claim_once(self) -> bool:
        claimed = await self.schedule.claim(self.clock.now())
        if claimed is None:
            return False
        run, job = claimed
        log.info(
            "Claimed scheduled scoring run %d for %s",
            run["scoring_run_id"],
            _customer_range(run["min_customer_id"], run["max_customer_id"]),
        )
        await self.runs.execute(run, job)
        return True


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error(
            "Scoring scheduler loop stopped by an unexpected error; scheduled "
            "scoring is off until the service restarts",
            exc_info=task.exception(),
        )


def _customer_range(low: int, high: int) -> str:
    # A bound of 0 means no bound on that side.
    if low == 0 and high == 0:
        return "every customer"
    return f"customers {low or 'from the first'} to {high or 'the last'}"
