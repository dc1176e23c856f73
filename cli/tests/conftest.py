"""Fixtures of the real-Envoy gateway tests, one gateway per test module.

Envoy runs the bootstrap from retain_cli.envoy_config in front of the real
user service (sign-in, JWKS, ext_authz Check) on its own database. The
events, inference and comms services are doubles that record every call with
its metadata, so a test can show whether a request reached its service. A
dashboard file server serves a small built folder. Everything listens on
127.0.0.1 on ports the kernel picks.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from argon2 import profiles
from cryptography.fernet import Fernet
from gateway_harness import (
    ADMIN_EMAIL,
    ANALYST_EMAIL,
    APP_JS,
    INDEX_HTML,
    PASSWORD,
    SECRET_FILE,
    Gateway,
    RecordingService,
    gateway_options,
    running_envoy,
)
from retain.user.v1 import user_pb2, user_pb2_grpc
from retain_cli import static
from retain_cli.infra import Postgres
from retain_runtime.certs import CertPaths
from retain_runtime.clock import Clock
from retain_runtime.credentials import aio_channel, server_credentials
from retain_runtime.server import SERVER_OPTIONS
from retain_user.passwords import Passwords
from retain_user.server import Service, prepare_database, start
from retain_user.settings import UserSettings


@pytest.fixture(scope="module")
async def user_service(postgres: Postgres, cert_dir: Path) -> AsyncIterator[Service]:
    settings = UserSettings.from_env(
        "user",
        {
            "RETAIN_USER_PORT": "0",
            "RETAIN_USER_DATABASE_URL": postgres.url(f"gateway_{uuid.uuid4().hex[:8]}"),
            "RETAIN_CERT_DIR": str(cert_dir),
            "RETAIN_USER_DATA_KEY": Fernet.generate_key().decode(),
        },
    )
    await asyncio.to_thread(prepare_database, settings.database_url)
    service = await start(settings, Clock(), passwords=Passwords(profiles.CHEAPEST))
    yield service
    await service.stop(0)


@pytest.fixture(scope="module")
async def operator(
    user_service: Service, cert_dir: Path
) -> AsyncIterator[user_pb2_grpc.UserServiceStub]:
    paths = CertPaths.in_directory(cert_dir, "operator")
    channel = aio_channel(f"127.0.0.1:{user_service.port}", paths)
    stub = user_pb2_grpc.UserServiceStub(channel)
    for email, role in (
        (ADMIN_EMAIL, user_pb2.ROLE_ADMIN),
        (ANALYST_EMAIL, user_pb2.ROLE_ANALYST),
    ):
        await stub.CreateAdmin(
            user_pb2.CreateAdminRequest(email=email, password=PASSWORD, role=role)
        )
    yield stub
    await channel.close()


@pytest.fixture(scope="module")
async def doubles(
    cert_dir: Path,
) -> AsyncIterator[dict[str, tuple[RecordingService, int]]]:
    servers, started = [], {}
    for name in ("events", "inference", "comms"):
        recorder = RecordingService()
        # The message size limits of the real services.
        server = grpc.aio.server(options=SERVER_OPTIONS)
        server.add_generic_rpc_handlers([recorder])
        credentials = server_credentials(CertPaths.in_directory(cert_dir, name))
        port = server.add_secure_port("127.0.0.1:0", credentials)
        await server.start()
        servers.append(server)
        started[name] = (recorder, port)
    yield started
    for server in servers:
        await server.stop(grace=None)


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    root = tmp_path_factory.mktemp("dist")
    (root / "index.html").write_bytes(INDEX_HTML)
    (root / "assets").mkdir()
    (root / "assets" / "app-1234.js").write_bytes(APP_JS)
    secret = tmp_path_factory.mktemp("outside") / "secret.txt"
    secret.write_bytes(SECRET_FILE)
    (root / "assets" / "link.txt").symlink_to(secret)
    server = static.make_server(root, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory,
    cert_dir: Path,
    user_service: Service,
    operator: user_pb2_grpc.UserServiceStub,
    doubles: dict[str, tuple[RecordingService, int]],
    dashboard: int,
) -> Iterator[Gateway]:
    directory = tmp_path_factory.mktemp("gateway")
    ports = {"user": user_service.port, **{n: port for n, (_, port) in doubles.items()}}
    options = gateway_options(directory, cert_dir, ports, dashboard)
    with running_envoy(options, directory) as (admin_url, port):
        yield Gateway(
            base_url=f"http://127.0.0.1:{port}",
            admin_url=admin_url,
            config_path=directory / "envoy.json",
            service=user_service,
            doubles={name: recorder for name, (recorder, _) in doubles.items()},
        )


@pytest.fixture
async def client(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as http:
        yield http
