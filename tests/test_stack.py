"""The stack `retain up` runs: its Envoy config validates and a dead worker restarts."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from retain_cli import envoy_config
from retain_cli.stack import Stack


def test_envoy_config_in_use_validates(stack: Stack) -> None:
    config = stack.options.state_dir / "envoy.json"
    command = [*envoy_config.envoy_command(config, log_level="error"), "--mode", "validate"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stdout


def test_killed_worker_is_restarted(stack: Stack) -> None:
    [worker] = [child for child in stack.children if child.name == "worker"]
    assert worker.process is not None
    old_pid = worker.process.pid
    os.kill(old_pid, signal.SIGKILL)
    worker.process.wait(timeout=10)

    stack.supervise_once()

    assert worker.process.pid != old_pid
    assert worker.process.poll() is None
    assert worker.restarts == 1


def test_no_secret_on_any_command_line(stack: Stack) -> None:
    secrets = [stack.env["RETAIN_AT_CALLBACK_SECRET"], stack.env["AT_API_KEY"]]
    for child in stack.children:
        assert child.process is not None
        arguments = Path(f"/proc/{child.process.pid}/cmdline").read_bytes().decode()
        for secret in secrets:
            assert secret not in arguments, child.name
