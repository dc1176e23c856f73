"""Assembly of the user service: database, domain objects and gRPC server."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import grpc
from retain.user.v1 import user_pb2_grpc
from retain_runtime import db
from retain_runtime.clock import Clock
from retain_runtime.server import RunningServer, create_server
from sqlalchemy.ext.asyncio import AsyncEngine

from retain_user.consent import ConsentLedger
from retain_user.crypto import DataCipher
from retain_user.customers import CustomerDirectory
from retain_user.policy import POLICY, SERVICE_NAME
from retain_user.servicer import UserServicer
from retain_user.settings import UserSettings
from retain_user.store import UserStore
from retain_user.validators import build_validators

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def prepare_database(url: str) -> None:
    """Create the database if needed and apply every migration; call before start."""
    db.ensure_database(url)
    db.migrate(url, MIGRATIONS_DIR)


@dataclass
class Service:
    """A running user service: its gRPC servers and its database engine."""

    running: RunningServer
    engine: AsyncEngine

    @property
    def port(self) -> int:
        return self.running.port

    async def stop(self, grace: float = 5.0) -> None:
        """Stop serving, let calls in flight finish, then close the database pool."""
        await self.running.stop(grace)
        await self.engine.dispose()
        log.info("User service stopped")


async def start(settings: UserSettings, clock: Clock) -> Service:
    """Start the user service on a migrated database."""
    engine = db.async_engine(settings.database_url)
    store = UserStore(engine)
    cipher = DataCipher(settings.data_key)
    servicer = UserServicer(
        CustomerDirectory(store, cipher, clock), ConsentLedger(store, cipher, clock)
    )

    def register(server: grpc.aio.Server) -> None:
        user_pb2_grpc.add_UserServiceServicer_to_server(servicer, server)

    running = await create_server(
        settings, SERVICE_NAME, register, POLICY, build_validators(clock)
    )
    return Service(running=running, engine=engine)
