"""One whole stack per test session, started as `retain up` starts it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from retain_cli.clients import Clients
from retain_cli.demo import DEMO_NOW
from retain_cli.stack import Stack, StackOptions
from retain_runtime.clock import Clock


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    state_dir: Path = tmp_path_factory.mktemp("stack")
    options = StackOptions(
        state_dir=state_dir,
        free_ports=True,
        clock_offset_seconds=Clock.starting_at(DEMO_NOW).offset_seconds,
        worker_threads=4,
    )
    running = Stack(options, environ={"PATH": "/usr/bin:/bin"})
    running.start()
    yield running
    running.stop()


@pytest.fixture(scope="session")
def clients(stack: Stack) -> Iterator[Clients]:
    connected = Clients.connect(stack.env)
    yield connected
    connected.close()
