"""Fixtures: a user service on a fresh, migrated database and its clients.

Every test gets its own database, so customer ids start at 1. Clients are
opened with the certificate of the mesh member named, such as "comms".
Passwords are hashed with argon2's cheapest parameters to keep tests fast.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from argon2 import profiles
from cryptography.fernet import Fernet
from retain.user.v1 import user_pb2_grpc
from retain_runtime.certs import CertPaths
from retain_runtime.clock import Clock
from retain_runtime.credentials import aio_channel
from retain_user.passwords import Passwords
from retain_user.server import Service, prepare_database, start
from retain_user.settings import UserSettings
from user_helpers import StubFactory


@pytest.fixture(scope="session")
def data_key() -> str:
    return Fernet.generate_key().decode()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def user_settings(database_url: str, cert_dir: Path, data_key: str) -> UserSettings:
    return UserSettings.from_env(
        "user",
        {
            "RETAIN_USER_PORT": "0",
            "RETAIN_USER_DATABASE_URL": database_url,
            "RETAIN_CERT_DIR": str(cert_dir),
            "RETAIN_USER_DATA_KEY": data_key,
        },
    )


@pytest.fixture
async def user_service(
    user_settings: UserSettings, clock: Clock
) -> AsyncIterator[Service]:
    await asyncio.to_thread(prepare_database, user_settings.database_url)
    service = await start(user_settings, clock, passwords=Passwords(profiles.CHEAPEST))
    yield service
    await service.stop(0)


@pytest.fixture
async def connect(user_service: Service, cert_dir: Path) -> AsyncIterator[StubFactory]:
    channels = []

    def stub_for(name: str) -> user_pb2_grpc.UserServiceStub:
        paths = CertPaths.in_directory(cert_dir, name)
        channel = aio_channel(f"127.0.0.1:{user_service.port}", paths)
        channels.append(channel)
        return user_pb2_grpc.UserServiceStub(channel)

    yield stub_for
    for channel in channels:
        await channel.close()


@pytest.fixture
def operator(connect: StubFactory) -> user_pb2_grpc.UserServiceStub:
    return connect("operator")


@pytest.fixture
def comms(connect: StubFactory) -> user_pb2_grpc.UserServiceStub:
    return connect("comms")
