"""Fixtures: a started emulator, an HTTP client for it and a callback receiver."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from emulator_helpers import API_KEY, USERNAME, CallbackReceiver
from retain_emulator import AfricasTalkingEmulator


@pytest.fixture
def receiver() -> Iterator[CallbackReceiver]:
    server = CallbackReceiver()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def emulator() -> Iterator[AfricasTalkingEmulator]:
    with AfricasTalkingEmulator(USERNAME, API_KEY) as running:
        yield running


@pytest.fixture
def client(emulator: AfricasTalkingEmulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emulator.base_url, timeout=5.0) as http:
        yield http
