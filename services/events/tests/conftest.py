"""Fixtures: an events service on a fresh database, its clients and the raw database."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from events_helpers import NOW, EventsClient
from retain.events.v1 import events_pb2_grpc
from retain_events.server import Service, prepare_database, start
from retain_runtime.certs import CertPaths
from retain_runtime.clock import Clock
from retain_runtime.credentials import aio_channel
from retain_runtime.settings import ServiceSettings


@pytest.fixture
def clock() -> Clock:
    return Clock.starting_at(NOW)


@pytest.fixture
async def events_service(
    database_url: str, cert_dir: Path, clock: Clock
) -> AsyncIterator[Service]:
    prepare_database(database_url)
    settings = ServiceSettings.from_env(
        "events",
        {
            "RETAIN_EVENTS_PORT": "0",
            "RETAIN_EVENTS_DATABASE_URL": database_url,
            "RETAIN_CERT_DIR": str(cert_dir),
        },
    )
    service = await start(settings, clock)
    yield service
    await service.stop(0)


@pytest.fixture
async def connect(
    events_service: Service, cert_dir: Path
) -> AsyncIterator[Callable[[str], EventsClient]]:
    """Return a function that opens a client with the named mesh certificate."""
    channels = []

    def open_client(name: str) -> EventsClient:
        paths = CertPaths.in_directory(cert_dir, name)
        channel = aio_channel(f"127.0.0.1:{events_service.port}", paths)
        channels.append(channel)
        return events_pb2_grpc.EventsServiceStub(channel)

    yield open_client
    for channel in channels:
        await channel.close()


@pytest.fixture
def client(connect: Callable[[str], EventsClient]) -> EventsClient:
    return connect("operator")


@pytest.fixture
def database(database_url: str, events_service: Service) -> Iterator[sa.Engine]:
    """Return a blocking engine on the service's database, for direct checks."""
    engine = sa.create_engine(database_url, poolclass=sa.pool.NullPool)
    yield engine
    engine.dispose()
