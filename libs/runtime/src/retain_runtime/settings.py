"""Settings read once from the environment at process start.

Every variable a service reads is listed in the README. Errors name the
variable and the bad value; secrets are hidden from ``repr``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from retain_runtime.certs import CertPaths
from retain_runtime.errors import SettingsError

# Default ports of `retain up`; tests pass their own. They lie below 32768, the
# start of Linux's default range for outgoing connections' local ports, so a
# client connection cannot hold one when the stack starts.
DEFAULT_PORTS = {"user": 15051, "events": 15052, "inference": 15053, "comms": 15054}


class Env:
    """Typed reads from an environment mapping."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self.environ = os.environ if environ is None else environ

    def str(self, name: str, default: str | None = None) -> str:
        value = self.environ.get(name, default)
        if value is None:
            raise SettingsError(name, "is not set; export it or use `retain up`")
        return value

    def int(self, name: str, default: int) -> int:
        raw = self.environ.get(name)
        if raw is None or raw == "":
            return default
        try:
            return int(raw)
        except ValueError:
            raise SettingsError(name, f'"{raw}" is not a whole number') from None

    def float(self, name: str, default: float) -> float:
        raw = self.environ.get(name)
        if raw is None or raw == "":
            return default
        try:
            return float(raw)
        except ValueError:
            raise SettingsError(name, f'"{raw}" is not a number') from None

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.environ.get(name) or default
        if value not in choices:
            raise SettingsError(name, f'"{value}" is not one of {", ".join(choices)}')
        return value


@dataclass(frozen=True)
class ServiceSettings:
    """Settings of every service process: its listen address, database,
    certificate and the addresses of its peers."""

    name: str
    host: str
    port: int
    health_port: int
    database_url: str = field(repr=False)
    cert_dir: Path
    targets: Mapping[str, str]
    clock_offset_seconds: float
    log_format: str
    log_level: str

    @property
    def certs(self) -> CertPaths:
        return CertPaths.in_directory(self.cert_dir, self.name)

    def cert_paths(self, name: str) -> CertPaths:
        """Return the certificate files of another mesh member, such as the worker."""
        return CertPaths.in_directory(self.cert_dir, name)

    @classmethod
    def from_env(
        cls, name: str, environ: Mapping[str, str] | None = None
    ) -> ServiceSettings:
        env = Env(environ)
        prefix = f"RETAIN_{name.upper()}"
        targets = {
            peer: env.str(f"RETAIN_{peer.upper()}_TARGET", f"127.0.0.1:{port}")
            for peer, port in DEFAULT_PORTS.items()
        }
        return cls(
            name=name,
            host=env.str(f"{prefix}_HOST", "127.0.0.1"),
            port=env.int(f"{prefix}_PORT", DEFAULT_PORTS.get(name, 0)),
            health_port=env.int(f"{prefix}_HEALTH_PORT", 0),
            database_url=env.str(f"{prefix}_DATABASE_URL"),
            cert_dir=Path(env.str("RETAIN_CERT_DIR", ".retain/certs")),
            targets=targets,
            clock_offset_seconds=env.float("RETAIN_CLOCK_OFFSET_SECONDS", 0.0),
            log_format=env.choice("RETAIN_LOG_FORMAT", "text", ("text", "json")),
            log_level=env.choice(
                "RETAIN_LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR")
            ),
        )
