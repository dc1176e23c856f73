"""Assembly of the events service: database, store, servicer and gRPC server."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from retain.events.v1 import events_pb2_grpc
from retain_runtime import db
from retain_runtime.clock import Clock
from retain_runtime.server import RunningServer, create_server
from retain_runtime.settings import ServiceSettings
from sqlalchemy.ext.asyncio import AsyncEngine

from retain_events.policy import POLICY, SERVICE_NAME
from retain_events.servicer import EventsServicer
from retain_events.store import EventStore
from retain_events.validators import VALIDATORS

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def prepare_database(url: str) -> None:
    """Create the events database if missing and apply every migration."""
    db.ensure_database(url)
    db.migrate(url, MIGRATIONS_DIR)


@dataclass
class Service:
    """A started events service and the engine it owns."""

    running: RunningServer
    engine: AsyncEngine
    store: EventStore

    @property
    def port(self) -> int:
        return self.running.port

    async def stop(self, grace: float = 5.0) -> None:
        """Stop serving, letting RPCs in flight finish, then close the pool."""
        await self.running.stop(grace)
        await self.engine.dispose()
        self.store.close()
        log.info("Events service stopped")


async def start(settings: ServiceSettings, clock: Clock) -> Service:
    """Start the events service on a database that prepare_database migrated."""
    engine = db.async_engine(settings.database_url)
    store = EventStore(engine)
    servicer = EventsServicer(store, clock)
    running = await create_server(
        settings,
        SERVICE_NAME,
        lambda server: events_pb2_grpc.add_EventsServiceServicer_to_server(
            servicer, server
        ),
        POLICY,
        VALIDATORS,
    )
    return Service(running, engine, store)
