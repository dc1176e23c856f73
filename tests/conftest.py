"""One whole stack per test session, started as `retain up` starts it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.progress import Progress

from retain_cli.admin_accounts import AdminAccount, ensure_first_admins
from retain_cli.clients import Clients
from retain_cli.demo import DEMO_NOW, Demo, DemoOptions, Summary
from retain_cli.stack import Stack, StackOptions
from retain_runtime.clock import Clock
from stack_ledger import DEMO_CUSTOMERS


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


@pytest.fixture(scope="session")
def summary(stack: Stack, clients: Clients) -> Summary:
    """The demo on the first DEMO_CUSTOMERS CDNOW customers, run once per session."""
    options = DemoOptions(
        customers=DEMO_CUSTOMERS, delivery_timeout_s=240, job_timeout_s=300
    )
    with Progress(disable=True) as progress:
        return Demo(clients, options, progress).run()


@pytest.fixture(scope="session")
def admins(stack: Stack, clients: Clients) -> list[AdminAccount]:
    """The two first admins `retain up` creates, with their saved passwords."""
    return ensure_first_admins(clients.user, stack.options.state_dir)
