"""Fixtures: a comms stack on real PostgreSQL and Redis, with peer doubles,
the AT emulator and an in-process Dramatiq worker the test starts itself."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from comms_doubles import FakeEvents, FakeInference, FakeUser, serve_double
from comms_harness import API_KEY, MORNING, SECRET, USERNAME, CallbackBridge, Stack
from retain.comms.v1 import comms_pb2_grpc
from retain_cli.infra import Redis
from retain_comms import server
from retain_comms.settings import CommsSettings
from retain_emulator import AfricasTalkingEmulator
from retain_runtime.certs import CertPaths
from retain_runtime.clock import Clock
from retain_runtime.credentials import aio_channel


def comms_environment(
    database_url: str, cert_dir: Path, redis_url: str, at_base_url: str
) -> dict[str, str]:
    return {
        "RETAIN_COMMS_PORT": "0",
        "RETAIN_COMMS_DATABASE_URL": database_url,
        "RETAIN_CERT_DIR": str(cert_dir),
        "RETAIN_REDIS_URL": redis_url,
        "RETAIN_COMMS_QUEUE_NAMESPACE": f"test-{uuid.uuid4().hex[:8]}",
        "AT_BASE_URL": at_base_url,
        "AT_USERNAME": USERNAME,
        "AT_API_KEY": API_KEY,
        "RETAIN_AT_CALLBACK_SECRET": SECRET,
        "AT_TIMEOUT_SECONDS": "2",
        "RETAIN_WORKER_THREADS": "4",
        "RETAIN_COMMS_SWEEP_SECONDS": "0.2",
    }


@pytest.fixture
async def stack(
    database_url: str, cert_dir: Path, redis_server: Redis
) -> AsyncIterator[Stack]:
    user, inference, events = FakeUser(), FakeInference(), FakeEvents()
    doubles = {
        name: await serve_double(name, servicer, cert_dir)
        for name, servicer in (
            ("user", user),
            ("inference", inference),
            ("events", events),
        )
    }
    bridge = CallbackBridge(cert_dir)
    bridge.start()
    emulator = AfricasTalkingEmulator(USERNAME, API_KEY, bridge.url("/delivery"))
    emulator.start()

    environ = comms_environment(
        database_url, cert_dir, redis_server.url, emulator.base_url
    )
    environ.update(
        {
            f"RETAIN_{name.upper()}_TARGET": f"127.0.0.1:{d.port}"
            for name, d in doubles.items()
        }
    )
    settings = CommsSettings.from_env(environ)
    await asyncio.to_thread(server.prepare_database, database_url)
    clock = Clock.starting_at(MORNING)
    service = await server.start(settings, clock)
    bridge.connect(service.port)
    channel = aio_channel(
        f"127.0.0.1:{service.port}", CertPaths.in_directory(cert_dir, "operator")
    )
    stack = Stack(
        settings=settings,
        service=service,
        clock=clock,
        comms=comms_pb2_grpc.CommsServiceStub(channel),
        user=user,
        inference=inference,
        events=events,
        emulator=emulator,
        bridge=bridge,
    )
    yield stack

    await asyncio.to_thread(stack.stop_worker)
    await channel.close()
    await service.stop(0)
    emulator.stop()
    bridge.stop()
    for running in doubles.values():
        await running.stop(0)
