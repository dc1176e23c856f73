"""A restarting replica fails only its own unfinished jobs, not other replicas'."""

from __future__ import annotations

import asyncio
import datetime as dt

import sqlalchemy as sa
from retain.type.v1 import job_pb2
from retain_inference import server
from retain_inference.jobs import JobRunner
from retain_inference.store import Store
from retain_inference.tables import SCHEDULED_SCORING_RUN, SCORING_RUN, jobs
from retain_runtime import db
from retain_runtime.clock import Clock

NOW = dt.datetime(2024, 6, 1, tzinfo=dt.UTC)
RUNNING = job_pb2.JOB_STATE_RUNNING
QUEUED = job_pb2.JOB_STATE_QUEUED
FAILED = job_pb2.JOB_STATE_FAILED


async def add_job(store: Store, kind: str, owner: str | None, state: int) -> str:
    job = await store.create_job(kind, NOW, owner)
    await store.update_job(job["job_id"], NOW, state=state)
    return str(job["job_id"])


async def test_restart_fails_only_own_jobs(database_url) -> None:
    server.prepare_database(database_url)
    engine = db.async_engine(database_url)
    store = Store(engine)
    try:
        own = await add_job(store, SCORING_RUN, "replica-a", RUNNING)
        own_queued = await add_job(store, SCORING_RUN, "replica-a", QUEUED)
        unowned = await add_job(store, SCORING_RUN, None, RUNNING)
        other = await add_job(store, SCORING_RUN, "replica-b", RUNNING)
        other_queued = await add_job(store, SCORING_RUN, "replica-b", QUEUED)
        scheduled = await add_job(store, SCHEDULED_SCORING_RUN, None, QUEUED)

        failed = await store.fail_interrupted_jobs(NOW, "replica-a")

        async with engine.connect() as conn:
            rows = await conn.execute(sa.select(jobs.c.job_id, jobs.c.state))
            states = {job_id: state for job_id, state in rows.all()}
    finally:
        await engine.dispose()

    assert failed == 3
    assert states[own] == FAILED
    assert states[own_queued] == FAILED
    assert states[unowned] == FAILED
    assert states[other] == RUNNING
    assert states[other_queued] == QUEUED
    assert states[scheduled] == QUEUED


async def test_runner_records_its_replica_on_jobs(database_url) -> None:
    server.prepare_database(database_url)
    engine = db.async_engine(database_url)
    runner = JobRunner(Store(engine), Clock(), "replica-a")

    async def work(progress) -> str:
        return "done"

    try:
        job = await runner.start(SCORING_RUN, work)
        await asyncio.gather(*runner.tasks)
        async with engine.connect() as conn:
            owner, state = (
                await conn.execute(
                    sa.select(jobs.c.owner, jobs.c.state).where(
                        jobs.c.job_id == job["job_id"]
                    )
                )
            ).one()
    finally:
        await engine.dispose()

    assert job["owner"] == "replica-a"
    assert owner == "replica-a"
    assert state == job_pb2.JOB_STATE_SUCCEEDED


async def test_expired_lease_fails_any_replicas_job(database_url) -> None:
    server.prepare_database(database_url)
    engine = db.async_engine(database_url)
    store = Store(engine)
    runner = JobRunner(store, Clock(), "replica-a", lease_seconds=1.0)
    # The watching replica's clock runs an hour ahead; leases use the
    # database's clock, so that does not matter.
    watcher = JobRunner(store, Clock(3600.0), "replica-w", lease_seconds=1.0)
    finish = asyncio.Event()

    async def work(progress) -> str:
        await finish.wait()
        return "done"

    async def state_of(job_id: str) -> tuple[int, str]:
        async with engine.connect() as conn:
            query = sa.select(jobs.c.state, jobs.c.message)
            row = (await conn.execute(query.where(jobs.c.job_id == job_id))).one()
        return row.state, row.message

    try:
        abandoned = await add_job(store, SCORING_RUN, "replica-abandoned", RUNNING)
        await store.update_job(abandoned, NOW, lease_expire_time=NOW)
        unleased = await add_job(store, SCORING_RUN, "replica-b", RUNNING)
        live = await runner.start(SCORING_RUN, work)
        watcher.watch_leases()
        # Two and a half leases: the live job's lease would have expired
        # twice without renewal.
        await asyncio.sleep(2.5)
        abandoned_state, abandoned_message = await state_of(abandoned)
        unleased_state, _ = await state_of(unleased)
        live_state, _ = await state_of(live["job_id"])
        finish.set()
        await asyncio.gather(*runner.tasks)
        finished_state, _ = await state_of(live["job_id"])
    finally:
        await watcher.stop()
        await runner.stop()
        await engine.dispose()

    assert abandoned_state == FAILED
    assert "replica-abandoned stopped renewing its lease" in abandoned_message
    assert unleased_state == RUNNING
    assert live_state == RUNNING
    assert finished_state == job_pb2.JOB_STATE_SUCCEEDED


async def test_job_failed_elsewhere_stays_failed(database_url) -> None:
    server.prepare_database(database_url)
    engine = db.async_engine(database_url)
    store = Store(engine)
    runner = JobRunner(store, Clock(), "replica-a", lease_seconds=60.0)
    failed_elsewhere = asyncio.Event()

    async def work(progress) -> str:
        await failed_elsewhere.wait()
        await progress.report(5, 10)
        return "model-7"

    try:
        job = await runner.start(SCORING_RUN, work)
        # Another replica finds the lease expired and fails the job.
        await eventually_running(store, job["job_id"])
        await store.update_job(job["job_id"], NOW, lease_expire_time=NOW)
        expired = await store.fail_expired_jobs(NOW)
        failed_elsewhere.set()
        await asyncio.gather(*runner.tasks)
        row = await store.get_job(job["job_id"])
    finally:
        await runner.stop()
        await engine.dispose()

    assert expired == [(job["job_id"], "replica-a")]
    assert row["state"] == FAILED
    assert row["result_id"] == ""
    assert row["progress_done"] == 0


async def eventually_running(store: Store, job_id: str) -> None:
    for _ in range(200):
        if (await store.get_job(job_id))["state"] == RUNNING:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"job {job_id} never started running")


async def test_job_ended_before_start_does_not_run(database_url) -> None:
    server.prepare_database(database_url)
    engine = db.async_engine(database_url)
    store = Store(engine)
    runner = JobRunner(store, Clock(), "replica-a")
    ran = []

    async def work(progress) -> str:
        ran.append(True)
        return "done"

    try:
        job = await runner.create(SCORING_RUN)
        await store.update_job(job["job_id"], NOW, state=FAILED)
        await runner.run(job, work)
        row = await store.get_job(job["job_id"])
    finally:
        await engine.dispose()

    assert ran == []
    assert row["state"] == FAILED
