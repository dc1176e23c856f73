"""Persistence of the inference service: jobs, model registry, runs and scores."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any, cast

import psycopg
import sqlalchemy as sa
from retain.inference.v1 import inference_pb2 as pb
from retain.type.v1 import job_pb2
from retain_runtime.errors import FailedPrecondition, NotFound
from sqlalchemy.ext.asyncio import AsyncEngine

from retain_inference.score_copy import COLUMNS as SCORE_COLUMNS
from retain_inference.tables import (
    ACTIVE,
    MODEL_COLUMNS,
    READY,
    SCHEDULED_SCORING_RUN,
    jobs,
    model_versions,
    promotions,
    scores,
    scoring_runs,
)

_UNFINISHED = (job_pb2.JOB_STATE_QUEUED, job_pb2.JOB_STATE_RUNNING)


def lease_end(seconds: float) -> sa.ColumnElement[dt.datetime]:
    """Return the time seconds from now on the database server's clock.

    Leases use the database's clock, not the service clock, because replicas
    may run with different RETAIN_CLOCK_OFFSET_SECONDS.
    """
    return sa.func.now() + sa.literal_column("interval '1 second'") * seconds


@dataclass(frozen=True)
class ModelRecord:
    model_version: str
    status: int
    config: dict[str, Any]
    cutoff_time: dt.datetime
    label_end_time: dt.datetime
    horizon_days: int
    metrics: dict[str, float]
    create_time: dt.datetime
    promote_time: dt.datetime | None


class Store:
    """Queries of the inference database, one short transaction each."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    # Jobs

    async def create_job(
        self, kind: str, now: dt.datetime, owner: str | None = None
    ) -> dict[str, Any]:
        row = {**new_job(kind, now), "owner": owner}
        async with self.engine.begin() as conn:
            await conn.execute(jobs.insert().values(row))
        return row

    async def update_job(self, job_id: str, now: dt.datetime, **values: Any) -> bool:
        """Set values on a queued or running job and return True.

        Return False, changing nothing, when the job has ended, for example
        because another replica failed it after its lease expired.
        """
        async with self.engine.begin() as conn:
            result = await conn.execute(
                jobs.update()
                .where(jobs.c.job_id == job_id, jobs.c.state.in_(_UNFINISHED))
                .values(update_time=now, **values)
            )
        return bool(result.rowcount)

    async def fail_interrupted_jobs(self, now: dt.datetime, owner: str) -> int:
        """Mark jobs that an earlier process of this replica left as failed.

        Only jobs owned by `owner`, or by no replica, count, because other
        replicas may be running theirs. Queued scheduled runs stay queued,
        because any replica may claim them. Returns the number of jobs failed.
        """
        # A replica that never comes back under the same id leaves its jobs
        # to fail_expired_jobs, once their leases expire.
        interrupted = sa.or_(
            jobs.c.state == job_pb2.JOB_STATE_RUNNING,
            sa.and_(
                jobs.c.state == job_pb2.JOB_STATE_QUEUED,
                jobs.c.kind != SCHEDULED_SCORING_RUN,
            ),
        )
        owned = sa.or_(jobs.c.owner == owner, jobs.c.owner.is_(None))
        async with self.engine.begin() as conn:
            result = await conn.execute(
                jobs.update()
                .where(interrupted, owned)
                .values(
                    state=job_pb2.JOB_STATE_FAILED,
                    update_time=now,
                    message="interrupted because the service restarted; start it again",
                )
            )
        return int(result.rowcount)

    async def renew_lease(self, job_id: str, owner: str, seconds: float) -> bool:
        """Extend the lease of a queued or running job of owner to seconds
        from now and return True.

        Return False when the job has ended or belongs to another replica.
        """
        async with self.engine.begin() as conn:
            result = await conn.execute(
                jobs.update()
                .where(
                    jobs.c.job_id == job_id,
                    jobs.c.owner == owner,
                    jobs.c.state.in_(_UNFINISHED),
                )
                .values(lease_expire_time=lease_end(seconds))
            )
        return bool(result.rowcount)

    async def fail_expired_jobs(self, now: dt.datetime) -> list[tuple[str, str]]:
        """Mark as failed, at now, every queued or running job whose lease has
        expired; return their (job id, owner) pairs."""
        message = sa.func.concat(
            "failed because replica ",
            sa.func.coalesce(jobs.c.owner, "unknown"),
            " stopped renewing its lease; start it again",
        )
        async with self.engine.begin() as conn:
            result = await conn.execute(
                jobs.update()
                .where(
                    jobs.c.state.in_(_UNFINISHED),
                    jobs.c.lease_expire_time < sa.func.now(),
                )
                .values(
                    state=job_pb2.JOB_STATE_FAILED, update_time=now, message=message
                )
                .returning(jobs.c.job_id, jobs.c.owner)
            )
            return [(str(job_id), str(owner)) for job_id, owner in result.all()]

    async def get_job(self, job_id: str) -> dict[str, Any]:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(jobs.select().where(jobs.c.job_id == job_id))
            ).first()
        if row is None:
            raise NotFound(
                f'job "{job_id}" does not exist; use the job_id a Start or Train call returned'
            )
        return dict(row._mapping)

    # Model registry

    async def add_model(self, record: ModelRecord, checkpoint: bytes) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                model_versions.insert().values(checkpoint=checkpoint, **record.__dict__)
            )

    async def count_models(self) -> int:
        async with self.engine.connect() as conn:
            return int(
                await conn.scalar(
                    sa.select(sa.func.count()).select_from(model_versions)
                )
            )

    async def list_models(self, after: str | None, limit: int) -> list[ModelRecord]:
        query = sa.select(*MODEL_COLUMNS).order_by(
            model_versions.c.model_version.desc()
        )
        if after is not None:
            query = query.where(model_versions.c.model_version < after)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query.limit(limit))).all()
        return [_model(row) for row in rows]

    async def get_model(self, version: str) -> ModelRecord:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(*MODEL_COLUMNS).where(
                        model_versions.c.model_version == version
                    )
                )
            ).first()
        if row is None:
            raise NotFound(f'model version "{version}" does not exist; see ListModels')
        return _model(row)

    async def checkpoint(self, version: str) -> bytes:
        async with self.engine.connect() as conn:
            data = await conn.scalar(
                sa.select(model_versions.c.checkpoint).where(
                    model_versions.c.model_version == version
                )
            )
        if data is None:
            raise NotFound(f'model version "{version}" does not exist')
        return bytes(data)

    async def active_version(self) -> str | None:
        async with self.engine.connect() as conn:
            return await conn.scalar(
                sa.select(model_versions.c.model_version).where(
                    model_versions.c.status == ACTIVE
                )
            )

    async def promote(self, version: str, by: str, now: dt.datetime) -> None:
        """Make version the only active one and record the promotion."""
        async with self.engine.begin() as conn:
            await conn.execute(
                model_versions.update()
                .where(model_versions.c.status == ACTIVE)
                .values(status=READY)
            )
            updated = await conn.execute(
                model_versions.update()
                .where(model_versions.c.model_version == version)
                .values(status=ACTIVE, promote_time=now)
            )
            if updated.rowcount == 0:
                raise NotFound(
                    f'model version "{version}" does not exist; see ListModels'
                )
            await conn.execute(
                promotions.insert().values(
                    model_version=version, promoted_by=by, promote_time=now
                )
            )

    async def previous_promotion(self) -> str:
        """Return the version promoted before the active one."""
        active = await self.active_version()
        query = (
            sa.select(promotions.c.model_version)
            .where(promotions.c.model_version != active)
            .order_by(promotions.c.promotion_id.desc())
            .limit(1)
        )
        async with self.engine.connect() as conn:
            version = await conn.scalar(query)
        if version is None:
            raise FailedPrecondition(
                "no earlier promoted model version to roll back to"
            )
        return str(version)

    # Scoring runs and scores

    async def create_run(self, values: dict[str, Any]) -> int:
        async with self.engine.begin() as conn:
            result = await conn.execute(
                scoring_runs.insert()
                .values(**values)
                .returning(scoring_runs.c.scoring_run_id)
            )
            return int(result.scalar_one())

    async def get_run(self, run_id: int) -> dict[str, Any]:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    scoring_runs.select().where(scoring_runs.c.scoring_run_id == run_id)
                )
            ).first()
        if row is None:
            raise NotFound(f"scoring run {run_id} does not exist; see ListScoringRuns")
        return dict(row._mapping)

    async def latest_finished_run(self) -> int:
        async with self.engine.connect() as conn:
            run_id = await conn.scalar(
                sa.select(sa.func.max(scoring_runs.c.scoring_run_id)).where(
                    scoring_runs.c.finished
                )
            )
        if run_id is None:
            raise FailedPrecondition(
                "no scoring run has finished yet; start one with StartScoringRun"
            )
        return int(run_id)

    async def previous_scored_count(
        self, run_id: int, min_customer_id: int, max_customer_id: int
    ) -> int:
        """Return the count of the latest finished run before run_id, or 0 if none.

        Only runs over the same customer-id range count.
        """
        query = (
            sa.select(scoring_runs.c.scored_count)
            .where(
                scoring_runs.c.finished,
                scoring_runs.c.scoring_run_id < run_id,
                scoring_runs.c.min_customer_id == min_customer_id,
                scoring_runs.c.max_customer_id == max_customer_id,
            )
            .order_by(scoring_runs.c.scoring_run_id.desc())
            .limit(1)
        )
        async with self.engine.connect() as conn:
            count = await conn.scalar(query)
        return int(count or 0)

    async def list_runs(self, before: int | None, limit: int) -> list[dict[str, Any]]:
        query = (
            scoring_runs.select()
            .order_by(scoring_runs.c.scoring_run_id.desc())
            .limit(limit)
        )
        if before is not None:
            query = query.where(scoring_runs.c.scoring_run_id < before)
        async with self.engine.connect() as conn:
            return [dict(r._mapping) for r in (await conn.execute(query)).all()]

    async def copy_scores(self, run_id: int, lines: bytes, count: int) -> None:
        """Store one page of scores, given as COPY text lines, and count them."""
        columns = ", ".join(SCORE_COLUMNS)
        async with self.engine.begin() as conn:
            await conn.execute(
                scoring_runs.update()
                .where(scoring_runs.c.scoring_run_id == run_id)
                .values(scored_count=scoring_runs.c.scored_count + count)
            )
            raw = await conn.get_raw_connection()
            driver = cast("psycopg.AsyncConnection[Any]", raw.driver_connection)
            statement = f"COPY scores ({columns}) FROM STDIN"
            async with driver.cursor() as cursor, cursor.copy(statement) as copy:
                await copy.write(lines)

    async def finish_run(self, run_id: int) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                scoring_runs.update()
                .where(scoring_runs.c.scoring_run_id == run_id)
                .values(finished=True)
            )

    async def list_scores(
        self,
        run_id: int,
        min_probability: float,
        after: tuple[int, float | None] | None,
        limit: int,
        order: int = pb.SCORE_ORDER_CUSTOMER_ID,
    ) -> list[dict[str, Any]]:
        """Return one page of a run's scores in order, resuming after a position.

        after is the customer id and, for the probability orders, the churn
        probability of the last row of the previous page.
        """
        query = (
            scores.select()
            .where(scores.c.scoring_run_id == run_id)
            .where(scores.c.churn_probability >= min_probability)
            .limit(limit)
        )
        probability, customer = scores.c.churn_probability, scores.c.customer_id
        if order == pb.SCORE_ORDER_CHURN_PROBABILITY_DESC:
            query = query.order_by(probability.desc(), customer)
            if after is not None:
                query = query.where(
                    sa.or_(
                        probability < after[1],
                        sa.and_(probability == after[1], customer > after[0]),
                    )
                )
        elif order == pb.SCORE_ORDER_CHURN_PROBABILITY_ASC:
            query = query.order_by(probability, customer)
            if after is not None:
                query = query.where(sa.tuple_(probability, customer) > after[::-1])
        else:
            query = query.order_by(customer)
            if after is not None:
                query = query.where(customer > after[0])
        async with self.engine.connect() as conn:
            return [dict(r._mapping) for r in (await conn.execute(query)).all()]

    async def customer_score(self, customer_id: int) -> dict[str, Any]:
        query = (
            sa.select(scores, scoring_runs.c.as_of_time)
            .join(
                scoring_runs, scoring_runs.c.scoring_run_id == scores.c.scoring_run_id
            )
            .where(scores.c.customer_id == customer_id, scoring_runs.c.finished)
            .order_by(scores.c.scoring_run_id.desc())
            .limit(1)
        )
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            raise NotFound(f"customer {customer_id} has no score in a finished run")
        return dict(row._mapping)

    async def run_probabilities(self, run_id: int) -> tuple[list[int], list[float]]:
        query = (
            sa.select(scores.c.customer_id, scores.c.churn_probability)
            .where(scores.c.scoring_run_id == run_id)
            .order_by(scores.c.customer_id)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [r[0] for r in rows], [r[1] for r in rows]

    async def histogram(self, run_id: int, buckets: int) -> list[int]:
        bucket = sa.func.least(
            sa.func.floor(scores.c.churn_probability * buckets), buckets - 1
        )
        query = (
            sa.select(bucket.label("b"), sa.func.count())
            .where(scores.c.scoring_run_id == run_id)
            .group_by("b")
        )
        counts = [0] * buckets
        async with self.engine.connect() as conn:
            for index, count in (await conn.execute(query)).all():
                counts[int(index)] = int(count)
        return counts

    async def risk_by_run(self, threshold: float, limit: int) -> list[dict[str, Any]]:
        at_risk = sa.func.count().filter(scores.c.churn_probability >= threshold)
        query = (
            sa.select(
                scoring_runs.c.scoring_run_id,
                scoring_runs.c.as_of_time,
                at_risk.label("at_risk"),
                sa.func.count().label("scored"),
            )
            .join(scores, scores.c.scoring_run_id == scoring_runs.c.scoring_run_id)
            .where(scoring_runs.c.finished)
            .group_by(scoring_runs.c.scoring_run_id)
            .order_by(scoring_runs.c.scoring_run_id.desc())
            .limit(limit)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [dict(r._mapping) for r in reversed(rows)]


def new_job(kind: str, now: dt.datetime) -> dict[str, Any]:
    """Return the row of a new queued job."""
    return {
        "job_id": uuid.uuid4().hex,
        "kind": kind,
        "state": job_pb2.JOB_STATE_QUEUED,
        "progress_done": 0,
        "progress_total": 0,
        "message": "",
        "result_id": "",
        "create_time": now,
        "update_time": now,
    }


def _model(row: Any) -> ModelRecord:
    return ModelRecord(**dict(row._mapping))
