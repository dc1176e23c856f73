"""Persistence of scheduled scoring: interval rows, queued runs and claims.

A scheduled scoring is one row of `scheduled_scorings` per interval, keyed by
the interval's start, plus one queued scoring run per customer-id shard. The
primary key lets only one replica record an interval. Each replica claims
queued runs one at a time with `FOR UPDATE SKIP LOCKED`, so two replicas never
run the same shard.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from retain.type.v1 import job_pb2
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncEngine

from retain_inference.store import new_job
from retain_inference.tables import (
    SCHEDULED_SCORING_RUN,
    jobs,
    scheduled_scorings,
    scoring_runs,
)

FINAL_STATES = (
    job_pb2.JOB_STATE_SUCCEEDED,
    job_pb2.JOB_STATE_FAILED,
    job_pb2.JOB_STATE_CANCELLED,
)


class ScheduleStore:
    """Queries of scheduled scoring, one short transaction each."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def record_slot(
        self,
        slot_time: dt.datetime,
        as_of: dt.datetime,
        version: str,
        shards: list[tuple[int, int]],
        now: dt.datetime,
    ) -> list[int]:
        """Record the interval and queue one run per (min, max) customer-id shard.

        Returns the new run ids, or an empty list when the interval was recorded
        before, by this replica or another.
        """
        slot = {
            "slot_time": slot_time,
            "as_of_time": as_of,
            "shard_count": len(shards),
            "create_time": now,
        }
        async with self.engine.begin() as conn:
            inserted = await conn.scalar(
                postgresql.insert(scheduled_scorings)
                .values(slot)
                .on_conflict_do_nothing()
                .returning(scheduled_scorings.c.slot_time)
            )
            if inserted is None:
                return []
            run_ids = []
            for min_customer_id, max_customer_id in shards:
                job = new_job(SCHEDULED_SCORING_RUN, now)
                await conn.execute(jobs.insert().values(job))
                run_id = await conn.scalar(
                    scoring_runs.insert()
                    .values(
                        model_version=version,
                        as_of_time=as_of,
                        min_customer_id=min_customer_id,
                        max_customer_id=max_customer_id,
                        job_id=job["job_id"],
                        slot_time=slot_time,
                    )
                    .returning(scoring_runs.c.scoring_run_id)
                )
                run_ids.append(int(run_id))
        return run_ids

    async def claim(
        self, now: dt.datetime
    ) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """Mark the oldest queued scheduled run as running and return it with its job."""
        queued = (
            sa.select(jobs.c.job_id)
            .where(
                jobs.c.state == job_pb2.JOB_STATE_QUEUED,
                jobs.c.kind == SCHEDULED_SCORING_RUN,
            )
            .order_by(jobs.c.create_time, jobs.c.job_id)
            .limit(1)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        async with self.engine.begin() as conn:
            job = (
                await conn.execute(
                    jobs.update()
                    .where(jobs.c.job_id == queued)
                    .values(state=job_pb2.JOB_STATE_RUNNING, update_time=now)
                    .returning(*jobs.c)
                )
            ).first()
            if job is None:
                return None
            run = (
                await conn.execute(
                    scoring_runs.select().where(scoring_runs.c.job_id == job.job_id)
                )
            ).one()
        return dict(run._mapping), dict(job._mapping)

    async def unfinished_runs(self, slot_time: dt.datetime) -> int:
        """Count the runs of the interval whose jobs have not ended."""
        query = (
            sa.select(sa.func.count())
            .select_from(
                scoring_runs.join(jobs, jobs.c.job_id == scoring_runs.c.job_id)
            )
            .where(
                scoring_runs.c.slot_time == slot_time,
                jobs.c.state.not_in(FINAL_STATES),
            )
        )
        async with self.engine.connect() as conn:
            return int(await conn.scalar(query) or 0)
