"""The local stack: every process `retain up` starts, in order, and stops.

Start order: certificates, PostgreSQL, Redis, the Africa's Talking emulator
(unless AT credentials are set), the four services, the Dramatiq worker, the
dashboard's file server (when frontend/dist is built) and Envoy. Each
service is waited for on its health port before the next starts.
A URL or credentials in the environment replace the embedded component:
RETAIN_POSTGRES_URL (a server URL; each service uses its own database on it),
RETAIN_REDIS_URL, and AT_USERNAME with AT_API_KEY (and AT_BASE_URL).
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from retain_cli import envoy_config
from retain_cli.infra import Postgres, Redis, free_port, stop_process, wait_for_port
from retain_runtime.certs import CertPaths, issue_mesh
from retain_runtime.credentials import MESH_NAMES
from retain_runtime.settings import DEFAULT_PORTS

log = logging.getLogger(__name__)

SERVICES = ("user", "events", "inference", "comms")
# Restarts of one process before the supervisor gives up on the stack.
MAX_RESTARTS = 5


class StackError(RuntimeError):
    """Raised when the stack cannot start or keep running, with the reason."""


def port_is_free(port: int) -> bool:
    """Return whether nothing listens on 127.0.0.1:port."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
EMULATOR_USERNAME = "sandbox"
EMULATOR_VOICE_NUMBER = "+254711000000"


@dataclass(frozen=True)
class StackOptions:
    """Ports and paths of one stack; free_ports picks every port at random."""

    state_dir: Path
    free_ports: bool = False
    envoy_port: int = 8080
    envoy_admin_port: int = 9901
    emulator_port: int = 8090
    postgres_port: int = 15432
    redis_port: int = 16379
    clock_offset_seconds: float = 0.0
    log_format: str = "text"
    emulator_balance_kes: str = "100000"
    worker_threads: int = 8


@dataclass
class Child:
    """One supervised process."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    health_port: int = 0
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0

    def start(self) -> None:
        with open(self.log_path, "ab") as log_file:
            self.process = subprocess.Popen(
                self.argv, env=self.env, stdout=log_file, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        log.info("Started %s (pid %d), log %s", self.name, self.process.pid, self.log_path)


@dataclass
class Stack:
    """Starts, supervises and stops the processes of one local deployment."""

    options: StackOptions
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    postgres: Postgres | None = None
    redis: Redis | None = None
    children: list[Child] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    # The dashboard's file server, or None when frontend/dist is not built.
    dashboard_port: int | None = None

    @property
    def cert_dir(self) -> Path:
        return self.options.state_dir / "certs"

    @property
    def log_dir(self) -> Path:
        return self.options.state_dir / "logs"

    def port(self, default: int) -> int:
        return free_port() if self.options.free_ports else default

    def port_setting(self, variable: str, default: int) -> int:
        """Return the port from variable, else default, checking that it is free."""
        raw = self.environ.get(variable)
        if raw:
            try:
                port = int(raw)
            except ValueError:
                raise StackError(f'{variable}="{raw}" is not a port number') from None
        else:
            port = self.port(default)
        if not port_is_free(port):
            raise StackError(
                f"port {port} on 127.0.0.1 is in use, so the stack cannot take it; "
                f"stop what listens there or set {variable} to another port"
            )
        return port

    def start(self) -> None:
        """Start every component; stop what started if one fails."""
        self.options.state_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(exist_ok=True)
        try:
            issue_mesh(self.cert_dir, MESH_NAMES)
            self.env = self._base_env()
            self._start_datastores()
            self._start_emulator()
            for name in SERVICES:
                self._start_service(name)
            self._start_worker()
            self._start_dashboard()
            self._start_envoy()
        except BaseException:
            self.stop()
            raise

    def _base_env(self) -> dict[str, str]:
        env = {k: v for k, v in self.environ.items() if not k.startswith("RETAIN_")}
        env.update(
            RETAIN_CERT_DIR=str(self.cert_dir.resolve()),
            RETAIN_STATE_DIR=str(self.options.state_dir.resolve()),
            RETAIN_CLOCK_OFFSET_SECONDS=repr(self.options.clock_offset_seconds),
            RETAIN_LOG_FORMAT=self.options.log_format,
            RETAIN_MODEL_DIR=str((self.options.state_dir / "models").resolve()),
            RETAIN_USER_DATA_KEY=self._secret("user-data.key", _fernet_key),
            RETAIN_AT_CALLBACK_SECRET=self._secret("callback.secret", _token),
            # Scheduled scoring is on in the stack, once an hour; the inference
            # service alone leaves it off unless the variable is set.
            RETAIN_SCORING_INTERVAL_SECONDS="3600",
            PYTHONUNBUFFERED="1",
        )
        for name in SERVICES:
            key = f"RETAIN_{name.upper()}"
            port = self.port_setting(f"{key}_PORT", DEFAULT_PORTS[name])
            env[f"{key}_PORT"] = str(port)
            env[f"{key}_TARGET"] = f"127.0.0.1:{port}"
            env[f"{key}_HEALTH_PORT"] = str(free_port())
        # Settings from the caller's environment win over the defaults above.
        for key, value in self.environ.items():
            if key.startswith("RETAIN_") and key != "RETAIN_CLOCK_OFFSET_SECONDS":
                env[key] = value
        return env

    def _secret(self, filename: str, make: Callable[[], str]) -> str:
        """Return the secret stored in the state folder, creating it once."""
        path = self.options.state_dir / filename
        if not path.exists():
            path.write_text(make())
            path.chmod(0o600)
        return path.read_text().strip()

    def _start_datastores(self) -> None:
        server_url = self.environ.get("RETAIN_POSTGRES_URL")
        if server_url is None:
            self.postgres = Postgres(
                self.options.state_dir / "postgres" / "data",
                port=self.port_setting("RETAIN_POSTGRES_PORT", self.options.postgres_port),
            )
            self.postgres.start()
            server_url = self.postgres.url("")
        for name in SERVICES:
            key = f"RETAIN_{name.upper()}_DATABASE_URL"
            self.env.setdefault(key, f"{server_url.rstrip('/')}/retain_{name}")
        if "RETAIN_REDIS_URL" not in self.environ:
            self.redis = Redis(
                self.options.state_dir / "redis",
                port=self.port_setting("RETAIN_REDIS_PORT", self.options.redis_port),
            )
            self.redis.start()
            self.env["RETAIN_REDIS_URL"] = self.redis.url

    @property
    def envoy_port(self) -> int:
        return int(self.env["RETAIN_ENVOY_PORT"])

    @property
    def gateway_url(self) -> str:
        """Return the URL of Envoy, which also serves the dashboard."""
        return f"http://127.0.0.1:{self.envoy_port}/"

    def _start_emulator(self) -> None:
        self.env["RETAIN_ENVOY_PORT"] = str(
            self.port_setting("RETAIN_ENVOY_PORT", self.options.envoy_port)
        )
        if self.environ.get("AT_API_KEY"):
            log.info("AT_API_KEY is set: messages go to %s", self.environ.get("AT_BASE_URL", "Africa's Talking"))
            return
        port = self.port_setting("RETAIN_EMULATOR_PORT", self.options.emulator_port)
        callbacks = f"http://127.0.0.1:{self.envoy_port}/callbacks/africastalking"
        secret = f"?secret={self.env['RETAIN_AT_CALLBACK_SECRET']}"
        self.env.update(
            AT_BASE_URL=f"http://127.0.0.1:{port}",
            AT_USERNAME=EMULATOR_USERNAME,
            AT_API_KEY=self._secret("emulator-api.key", _token),
            # The emulator places calls from any number; a live account needs its own.
            AT_VOICE_NUMBER=EMULATOR_VOICE_NUMBER,
        )
        # The callback URLs carry the secret, so they travel in the emulator's
        # environment, which other local users cannot read, not in its arguments.
        emulator_env = {
            **self.env,
            "RETAIN_EMULATOR_CALLBACK_URL": f"{callbacks}/delivery{secret}",
            "RETAIN_EMULATOR_VOICE_CALLBACK_URL": f"{callbacks}/voice{secret}",
        }
        child = Child(
            "emulator",
            [sys.executable, "-m", "retain_emulator", "--port", str(port),
             "--username", EMULATOR_USERNAME,
             "--balance", self.options.emulator_balance_kes],
            emulator_env, self.log_dir / "emulator.log",
        )
        self._launch(child)
        assert child.process is not None
        wait_for_port(port, child.process, 15)

    def _start_service(self, name: str) -> None:
        health_port = int(self.env[f"RETAIN_{name.upper()}_HEALTH_PORT"])
        child = Child(
            name, [sys.executable, "-m", f"retain_{name}"], self.env,
            self.log_dir / f"{name}.log", health_port=health_port,
        )
        self._launch(child)
        wait_for_health(child, timeout=120)

    def _start_worker(self) -> None:
        env = dict(self.env, RETAIN_WORKER_THREADS=str(self.options.worker_threads))
        child = Child(
            "worker", [sys.executable, "-m", "retain_comms.worker"], env,
            self.log_dir / "worker.log",
        )
        self._launch(child)

    def _start_dashboard(self) -> None:
        root = frontend_dist_path()
        if not (root / "index.html").is_file():
            log.warning(
                "%s is not built, so no dashboard is served; run `make frontend`", root
            )
            return
        # Only Envoy connects to it, so it always takes a free port.
        port = free_port()
        argv = [
            sys.executable, "-m", "retain_cli.static",
            "--root", str(root), "--port", str(port),
        ]
        child = Child(
            "dashboard", argv, self.env, self.log_dir / "dashboard.log"
        )
        self._launch(child)
        assert child.process is not None
        wait_for_port(port, child.process, 15)
        self.dashboard_port = port

    def _start_envoy(self) -> None:
        targets = {name: self.env[f"RETAIN_{name.upper()}_TARGET"] for name in SERVICES}
        dashboard = None
        if self.dashboard_port is not None:
            dashboard = f"127.0.0.1:{self.dashboard_port}"
        options = envoy_config.EnvoyOptions(
            listen_port=self.envoy_port,
            admin_port=self.port_setting(
                "RETAIN_ENVOY_ADMIN_PORT", self.options.envoy_admin_port
            ),
            descriptor_set=descriptor_set_path(),
            certs=CertPaths.in_directory(self.cert_dir, "envoy"),
            upstreams=targets,
            access_log_path=self.log_dir / "envoy-access.log",
            dashboard=dashboard,
        )
        config = envoy_config.write_config(options, self.options.state_dir / "envoy.json")
        child = Child(
            "envoy",
            envoy_config.envoy_command(config, log_level="warn"),
            self.env, self.log_dir / "envoy.log",
        )
        self._launch(child)
        assert child.process is not None
        wait_for_port(self.envoy_port, child.process, 30)

    def _launch(self, child: Child) -> None:
        self.children.append(child)
        child.start()

    def supervise_once(self) -> None:
        """Restart any process that died, up to MAX_RESTARTS times each.

        Raises StackError when a process keeps dying, so the caller stops the
        stack instead of looping.
        """
        for datastore in (self.postgres, self.redis):
            if datastore and datastore.process and datastore.process.poll() is not None:
                log.warning("%s exited; starting it again", type(datastore).__name__)
                datastore.start()
        for child in self.children:
            assert child.process is not None
            code = child.process.poll()
            if code is None:
                continue
            if child.restarts >= MAX_RESTARTS:
                raise StackError(
                    f"{child.name} exited with code {code} {child.restarts + 1} times; "
                    f"see {child.log_path}"
                )
            child.restarts += 1
            log.warning(
                "%s exited with code %d; restarting it (restart %d of %d), log %s",
                child.name, code, child.restarts, MAX_RESTARTS, child.log_path,
            )
            child.start()

    def stop(self) -> None:
        """Stop every child in reverse start order, then Redis and PostgreSQL."""
        for child in reversed(self.children):
            stop_process(child.process, child.name)
        self.children.clear()
        if self.redis:
            self.redis.stop()
        if self.postgres:
            self.postgres.stop()


def wait_for_health(child: Child, timeout: float) -> None:
    """Poll a service's plaintext health port until it reports SERVING."""
    deadline = time.monotonic() + timeout
    channel = grpc.insecure_channel(f"127.0.0.1:{child.health_port}")
    stub = health_pb2_grpc.HealthStub(channel)
    try:
        while time.monotonic() < deadline:
            assert child.process is not None
            if child.process.poll() is not None:
                raise RuntimeError(
                    f"{child.name} exited with code {child.process.returncode} "
                    f"while starting; see {child.log_path}"
                )
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.1)
    finally:
        channel.close()
    raise TimeoutError(f"{child.name} was not healthy after {timeout:.0f}s; see {child.log_path}")


def descriptor_set_path() -> Path:
    """Return the descriptor set that scripts/gen_proto.py writes for Envoy."""
    path = Path(__file__).resolve().parents[3] / "build" / "retain.binpb"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; run `make proto`")
    return path


def frontend_dist_path() -> Path:
    """Return the folder that `make frontend` builds the dashboard into."""
    return Path(__file__).resolve().parents[3] / "frontend" / "dist"


def _token() -> str:
    return secrets.token_urlsafe(24)


def _fernet_key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()
