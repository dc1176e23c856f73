"""Assembly of the inference service: database, peers, domain and gRPC server."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import grpc
from retain.events.v1 import events_pb2_grpc
from retain.inference.v1 import inference_pb2_grpc
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from retain_inference.composer import composer_from_env
from retain_inference.events_client import EventsClient
from retain_inference.jobs import JobRunner
from retain_inference.policy import POLICY, SERVICE
from retain_inference.registry import Registry
from retain_inference.runs import ScoringOptions, ScoringRuns
from retain_inference.schedule_store import ScheduleStore
from retain_inference.scheduler import LOCK_NAME, AdvisoryLock, ScoringScheduler
from retain_inference.servicer import InferenceServicer
from retain_inference.settings import InferenceSettings
from retain_inference.store import Store
from retain_inference.validators import VALIDATORS
from retain_runtime import db
from retain_runtime.clock import Clock
from retain_runtime.credentials import aio_channel
from retain_runtime.server import RunningServer, create_server

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"


def prepare_database(url: str) -> None:
    """Create the database if missing and apply migrations; run before start."""
    db.ensure_database(url)
    db.migrate(url, MIGRATIONS)


@dataclass
class InferenceService:
    """A running inference service and what it must close on stop."""

    running: RunningServer
    engine: AsyncEngine
    events_channel: grpc.aio.Channel
    jobs: JobRunner
    scheduler: ScoringScheduler | None

    @property
    def port(self) -> int:
        return self.running.port

    async def stop(self, grace: float = 5.0) -> None:
        await self.running.stop(grace)
        if self.scheduler is not None:
            await self.scheduler.stop()
        await self.jobs.stop()
        await self.events_channel.close()
        await self.engine.dispose()
        log.info("Inference service stopped")


async def start(
    settings: InferenceSettings, clock: Clock | None = None
) -> InferenceService:
    """Open the database and peers, then serve InferenceService."""
    service = settings.service
    clock = clock or Clock(service.clock_offset_seconds)
    engine = db.async_engine(service.database_url)
    store = Store(engine)
    failed = await store.fail_interrupted_jobs(clock.now(), settings.replica_id)
    if failed:
        log.warning(
            "Marked %d jobs of replica %s as failed: its earlier process stopped "
            "while they ran",
            failed,
            settings.replica_id,
        )
    channel = aio_channel(service.targets["events"], service.certs)
    events = EventsClient(events_pb2_grpc.EventsServiceStub(channel))
    jobs = JobRunner(store, clock, settings.replica_id, settings.job_lease_seconds)
    jobs.watch_leases()
    registry = Registry(store, events, clock, settings.torch_threads)
    runs = ScoringRuns(
        store,
        events,
        registry,
        jobs,
        ScoringOptions(
            settings.score_page_size,
            settings.score_batch_size,
            settings.torch_threads,
            settings.forward_workers,
        ),
    )
    servicer = InferenceServicer(
        store, registry, runs, jobs, clock, composer_from_env()
    )
    running = await create_server(
        service,
        SERVICE,
        lambda server: inference_pb2_grpc.add_InferenceServiceServicer_to_server(
            servicer, server
        ),
        POLICY,
        VALIDATORS,
    )
    scheduler = None
    if settings.scoring_interval_seconds > 0:
        scheduler = ScoringScheduler(
            runs,
            ScheduleStore(engine),
            events,
            clock,
            AdvisoryLock(libpq_conninfo(service.database_url), LOCK_NAME),
            settings.scoring_interval_seconds,
            settings.scoring_shards,
        )
        scheduler.start()
    return InferenceService(running, engine, channel, jobs, scheduler)


def libpq_conninfo(url: str) -> str:
    """Turn the service's SQLAlchemy database URL into a libpq connection URL."""
    return (
        make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    )
