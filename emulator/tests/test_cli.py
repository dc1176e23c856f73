"""`python -m retain_emulator` runs until SIGTERM or SIGINT and logs start and stop."""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import sys
import time

import httpx
import pytest
from emulator_helpers import API_KEY, AT_HEADERS, USERNAME, send_sms

LISTENING = re.compile(r"AT emulator listening on (http://127\.0\.0\.1:\d+)")


def read_until(
    process: subprocess.Popen[str], pattern: re.Pattern[str], timeout: float
) -> str:
    """Read stderr lines until one matches. Return all lines read so far."""
    assert process.stderr is not None
    output = ""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(process.stderr, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if not selector.select(timeout=0.1):
                continue
            line = process.stderr.readline()
            if not line:
                break
            output += line
            if pattern.search(line):
                return output
    raise AssertionError(
        f"no line matched {pattern.pattern!r} within {timeout} s:\n{output}"
    )


def start_cli(*extra: str) -> subprocess.Popen[str]:
    command = [
        sys.executable,
        "-m",
        "retain_emulator",
        "--port",
        "0",
        "--username",
        USERNAME,
    ]
    return subprocess.Popen(
        [*command, *extra],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "AT_API_KEY": API_KEY},
    )


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_cli_serves_until_signal(stop_signal: signal.Signals) -> None:
    with start_cli() as process:
        try:
            output = read_until(process, LISTENING, timeout=20)
            match = LISTENING.search(output)
            assert match is not None
            with httpx.Client(base_url=match.group(1), timeout=5) as http:
                response = send_sms(http, "+254712345601", headers=AT_HEADERS)
            process.send_signal(stop_signal)
            rest = read_until(process, re.compile(r"stopped"), timeout=20)
            exit_code = process.wait(timeout=20)
        finally:
            if process.poll() is None:
                process.kill()

    assert response.status_code == 201
    assert exit_code == 0
    assert API_KEY not in output + rest


def test_cli_without_api_key_exits_with_usage_error() -> None:
    env = {key: value for key, value in os.environ.items() if key != "AT_API_KEY"}
    completed = subprocess.run(
        [sys.executable, "-m", "retain_emulator", "--port", "0"],
        capture_output=True,
        check=False,
        text=True,
        env=env,
        timeout=30,
    )

    assert completed.returncode == 2
    assert "missing API key" in completed.stderr
