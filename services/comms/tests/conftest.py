"""Fixtures: a comms stack on real PostgreSQL and Redis, with peer doubles,
the AT emulator and an in-process Dramatiq worker the test starts itself."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from comms_harness import Stack, open_stack
from retain_cli.infra import Redis


@pytest.fixture
async def stack(
    database_url: str, cert_dir: Path, redis_server: Redis
) -> AsyncIterator[Stack]:
    async with open_stack(database_url, cert_dir, redis_server.url) as running:
        yield running
