"""Session-wide real components: one PostgreSQL, one Redis, one mesh CA.

Every test session starts each from its wheel once; tests create their own
databases on the shared server and their own servers on free ports.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from retain_cli.infra import Postgres, Redis
from retain_runtime.certs import issue_mesh
from retain_runtime.credentials import MESH_NAMES


@pytest.fixture(scope="session")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("retain")


@pytest.fixture(scope="session")
def cert_dir(state_dir: Path) -> Path:
    directory = state_dir / "certs"
    issue_mesh(directory, [*MESH_NAMES, "stranger"])
    return directory


@pytest.fixture(scope="session")
def postgres(state_dir: Path) -> Iterator[Postgres]:
    server = Postgres(state_dir / "pg" / "data")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_server(state_dir: Path) -> Iterator[Redis]:
    server = Redis(state_dir / "redis")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def database_url(postgres: Postgres) -> str:
    """Return the URL of a fresh, empty database on the session server."""
    return postgres.url(f"test_{uuid.uuid4().hex[:12]}")
