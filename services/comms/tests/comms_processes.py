"""Comms workers as real processes, ``python -m retain_comms.worker``, for the
fault tests that kill them and for bench/sms.py.

A worker process reads the stack's environment and the offset of its clock,
so its clock and the comms server's agree.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import IO

# Milliseconds a Dramatiq consumer waits before it reconnects to Redis after a
# connection error; Dramatiq's own default is 3000.
CONSUMER_RESTART_DELAY_MS = 200


class WorkerProcess:
    """One comms worker process, its output appended to log_path."""

    def __init__(
        self,
        environ: Mapping[str, str],
        clock_offset_seconds: float,
        log_path: Path,
        threads: int | None = None,
    ) -> None:
        self.environ = {
            **os.environ,
            **environ,
            "RETAIN_CLOCK_OFFSET_SECONDS": repr(clock_offset_seconds),
            "dramatiq_restart_delay": str(CONSUMER_RESTART_DELAY_MS),
        }
        if threads is not None:
            self.environ["RETAIN_WORKER_THREADS"] = str(threads)
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError("the worker process has not been started")
        return self.process.pid

    def start(self) -> None:
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed by _reap
        self.process = subprocess.Popen(
            [sys.executable, "-m", "retain_comms.worker"],
            env=self.environ,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def kill(self) -> None:
        """Send SIGKILL, as an out-of-memory kill or a lost machine would."""
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
        self._reap()

    def stop(self, timeout: float = 15.0) -> None:
        """Stop gracefully with SIGTERM; SIGKILL after timeout seconds."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._reap()

    def _reap(self) -> None:
        self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None
