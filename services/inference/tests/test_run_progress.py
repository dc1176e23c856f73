"""The progress total of a scoring run comes from the last run over its range."""

from __future__ import annotations

import datetime as dt

from retain_inference import server
from retain_inference.store import Store
from retain_runtime import db

AS_OF = dt.datetime(2024, 6, 1, tzinfo=dt.UTC)


async def add_run(
    store: Store, min_id: int, max_id: int, scored: int, finished: bool
) -> int:
    job = await store.create_job("scoring_run", AS_OF)
    run_id = await store.create_run(
        {
            "model_version": "v1",
            "as_of_time": AS_OF,
            "min_customer_id": min_id,
            "max_customer_id": max_id,
            "job_id": job["job_id"],
        }
    )
    await store.copy_scores(run_id, b"", scored)
    if finished:
        await store.finish_run(run_id)
    return run_id


async def test_previous_count_comes_from_latest_finished_run(database_url) -> None:
    server.prepare_database(database_url)
    engine = db.async_engine(database_url)
    store = Store(engine)
    try:
        first = await add_run(store, 0, 0, scored=0, finished=False)
        await add_run(store, 0, 0, scored=70, finished=True)
        await add_run(store, 0, 0, scored=90, finished=True)
        await add_run(store, 0, 0, scored=10, finished=False)
        await add_run(store, 1, 50, scored=40, finished=True)
        current = await add_run(store, 0, 0, scored=0, finished=False)

        assert await store.previous_scored_count(current, 0, 0) == 90
        assert await store.previous_scored_count(current, 1, 50) == 40
        assert await store.previous_scored_count(current, 51, 0) == 0
        assert await store.previous_scored_count(first, 0, 0) == 0
    finally:
        await engine.dispose()
