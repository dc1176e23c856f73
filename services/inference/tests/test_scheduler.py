"""Scheduled scoring: one run per interval across replicas, shards and progress.

Two inference services share one database and one test clock, as two
replicas of one deployment would share a database and the wall clock. The
events service is the test double of inference_doubles.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from inference_doubles import FakeEvents, start_fake_events, synthetic_events
from retain.type.v1 import job_pb2
from retain_inference import server
from retain_inference.checkpoint import checkpoint_to_bytes
from retain_inference.scheduler import shard_ranges, slot_start
from retain_inference.settings import InferenceSettings
from retain_inference.store import ModelRecord, Store
from retain_inference.tables import READY, jobs, scores, scoring_runs
from retain_runtime import db
from retain_runtime.clock import Clock
from retain_runtime.errors import SettingsError
from retain_runtime.server import RunningServer
from sqlalchemy.ext.asyncio import AsyncEngine

UTC = dt.UTC
HOUR = 3600
CUSTOMERS = 240
# 10 minutes into the interval that starts at 2024-06-01 00:00 UTC.
START = dt.datetime(2024, 6, 1, 0, 10, tzinfo=UTC)


@pytest.fixture(scope="module")
async def fake_events() -> FakeEvents:
    return FakeEvents(synthetic_events(CUSTOMERS))


@pytest.fixture(scope="module")
async def events_server(
    cert_dir: Path, fake_events: FakeEvents
) -> AsyncIterator[RunningServer]:
    running = await start_fake_events(cert_dir, fake_events)
    yield running
    await running.stop(0)


@pytest.fixture
async def engine(database_url: str, trained) -> AsyncIterator[AsyncEngine]:
    """Return an engine on a migrated database whose active model is `trained`."""
    server.prepare_database(database_url)
    engine = db.async_engine(database_url)
    store = Store(engine)
    record = ModelRecord(
        model_version="gru-test",
        status=READY,
        config=dataclasses.asdict(trained.config),
        cutoff_time=START,
        label_end_time=START,
        horizon_days=trained.config.horizon_days,
        metrics={},
        create_time=START,
        promote_time=None,
    )
    await store.add_model(record, checkpoint_to_bytes(trained.predictor))
    await store.promote("gru-test", "test", START)
    yield engine
    await engine.dispose()


@pytest.fixture
async def replicas(
    engine: AsyncEngine, database_url: str, events_server: RunningServer, cert_dir: Path
) -> AsyncIterator[Callable[..., Awaitable[list[server.InferenceService]]]]:
    """Return a function that starts replicas on one database and one clock."""
    started: list[server.InferenceService] = []

    async def start(count: int, clock: Clock, shards: int = 1) -> list:
        for _ in range(count):
            settings = InferenceSettings.from_env(
                {
                    "RETAIN_INFERENCE_PORT": "0",
                    "RETAIN_INFERENCE_DATABASE_URL": database_url,
                    "RETAIN_CERT_DIR": str(cert_dir),
                    "RETAIN_EVENTS_TARGET": f"127.0.0.1:{events_server.port}",
                    "RETAIN_SCORE_PAGE_SIZE": "50",
                    "RETAIN_TORCH_THREADS": "1",
                    "RETAIN_SCORING_INTERVAL_SECONDS": str(HOUR),
                    "RETAIN_SCORING_SHARDS": str(shards),
                    "RETAIN_REPLICA_ID": f"replica-{len(started) + 1}",
                }
            )
            started.append(await server.start(settings, clock))
        return started

    yield start
    for service in started:
        await service.stop(0)


async def wait_until(
    condition: Callable[[], Awaitable[bool]], description: str
) -> None:
    """Poll condition every 50 ms for up to 60 s."""
    for _ in range(1200):
        if await condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting until {description}")


async def scheduled_runs(engine: AsyncEngine) -> list[dict]:
    """Return the scheduled runs with their job state and progress."""
    query = (
        sa.select(
            scoring_runs,
            jobs.c.state,
            jobs.c.progress_done,
            jobs.c.progress_total,
        )
        .join(jobs, jobs.c.job_id == scoring_runs.c.job_id)
        .where(scoring_runs.c.slot_time.is_not(None))
        .order_by(scoring_runs.c.scoring_run_id)
    )
    async with engine.connect() as conn:
        return [dict(row._mapping) for row in (await conn.execute(query)).all()]


def all_handled(services: list[server.InferenceService], slot: dt.datetime):
    async def check() -> bool:
        return all(s.scheduler and s.scheduler.handled_slot == slot for s in services)

    return check


def all_succeeded(engine: AsyncEngine, count: int):
    async def check() -> bool:
        runs = await scheduled_runs(engine)
        return len(runs) == count and all(
            run["state"] == job_pb2.JOB_STATE_SUCCEEDED for run in runs
        )

    return check


async def test_two_replicas_schedule_one_run_per_interval(replicas, engine) -> None:
    clock = Clock.starting_at(START)
    services = await replicas(2, clock)
    first_slot = dt.datetime(2024, 6, 1, tzinfo=UTC)

    await wait_until(all_handled(services, first_slot), "both saw the first interval")
    await wait_until(all_succeeded(engine, 1), "the first run succeeded")
    ticks = [s.scheduler.schedule_ticks for s in services]
    clock.advance(HOUR / 2)  # 00:40, still in the first interval
    await wait_until(
        _ticked_twice(services, ticks), "both checked the clock twice more"
    )
    assert len(await scheduled_runs(engine)) == 1

    clock.advance(HOUR / 2)  # 01:10, in the second interval
    second_slot = first_slot + dt.timedelta(hours=1)
    await wait_until(all_handled(services, second_slot), "both saw the next interval")
    await wait_until(all_succeeded(engine, 2), "the second run succeeded")

    runs = await scheduled_runs(engine)
    assert [run["slot_time"] for run in runs] == [first_slot, second_slot]
    for run in runs:
        assert run["slot_time"] <= run["as_of_time"]
        assert run["as_of_time"] < run["slot_time"] + dt.timedelta(hours=1)
        assert run["finished"]
        assert run["scored_count"] == CUSTOMERS


def _ticked_twice(services: list[server.InferenceService], before: list[int]):
    async def check() -> bool:
        now = [s.scheduler.schedule_ticks for s in services]
        return all(after >= ticks + 2 for after, ticks in zip(now, before))

    return check


async def test_scheduled_run_progress_reaches_total(replicas, engine) -> None:
    await replicas(1, Clock.starting_at(START))

    await wait_until(all_succeeded(engine, 1), "the scheduled run succeeded")

    [run] = await scheduled_runs(engine)
    assert run["progress_total"] == CUSTOMERS
    assert run["progress_done"] == CUSTOMERS


async def test_shards_cover_every_customer_once(replicas, engine) -> None:
    await replicas(2, Clock.starting_at(START), shards=3)

    await wait_until(all_succeeded(engine, 3), "three shard runs succeeded")

    runs = await scheduled_runs(engine)
    assert [(r["min_customer_id"], r["max_customer_id"]) for r in runs] == [
        (0, 80),
        (81, 160),
        (161, 0),
    ]
    assert {run["slot_time"] for run in runs} == {dt.datetime(2024, 6, 1, tzinfo=UTC)}
    assert [run["progress_total"] for run in runs] == [80, 80, 80]
    async with engine.connect() as conn:
        customer_ids = (await conn.scalars(sa.select(scores.c.customer_id))).all()
    assert sorted(customer_ids) == list(range(1, CUSTOMERS + 1))


def test_slot_start_aligns_to_the_interval() -> None:
    now = dt.datetime(2024, 6, 1, 5, 59, 59, tzinfo=UTC)

    assert slot_start(now, HOUR) == dt.datetime(2024, 6, 1, 5, tzinfo=UTC)
    assert slot_start(now, 6 * HOUR) == dt.datetime(2024, 6, 1, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("first", "last", "shards", "expected"),
    [
        (1, 240, 3, [(0, 80), (81, 160), (161, 0)]),
        (1, 10, 1, [(0, 0)]),
        (5, 6, 4, [(0, 5), (6, 0)]),
        (7, 7, 2, [(0, 0)]),
    ],
    ids=["even", "one shard", "more shards than ids", "one customer"],
)
def test_shard_ranges_split_ids_evenly(first, last, shards, expected) -> None:
    assert shard_ranges(first, last, shards) == expected


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("RETAIN_SCORING_SHARDS", "0"),
        ("RETAIN_SCORING_INTERVAL_SECONDS", "-1"),
        ("RETAIN_SCORE_PAGE_SIZE", "20000"),
        ("RETAIN_REPLICA_ID", " "),
        ("RETAIN_JOB_LEASE_SECONDS", "0.5"),
        ("RETAIN_FORWARD_WORKERS", "0"),
        ("RETAIN_FORWARD_WORKERS", "65"),
    ],
)
def test_bad_scoring_setting_is_rejected(variable: str, value: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        InferenceSettings.from_env(
            {"RETAIN_INFERENCE_DATABASE_URL": "unused", variable: value}
        )
