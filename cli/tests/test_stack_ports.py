"""The stack's default ports stay out of the kernel's range for client ports."""

from __future__ import annotations

from pathlib import Path

from retain_cli.stack import StackOptions
from retain_runtime.settings import DEFAULT_PORTS


def client_port_range() -> range:
    low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    return range(int(low), int(high) + 1)


def test_default_ports_are_outside_the_client_port_range() -> None:
    options = StackOptions(state_dir=Path("unused"))
    ports = {
        "envoy": options.envoy_port,
        "envoy admin": options.envoy_admin_port,
        "emulator": options.emulator_port,
        "postgres": options.postgres_port,
        "redis": options.redis_port,
        **DEFAULT_PORTS,
    }
    clients = client_port_range()

    taken = {name: port for name, port in ports.items() if port in clients}

    assert taken == {}


def test_default_ports_differ() -> None:
    options = StackOptions(state_dir=Path("unused"))
    ports = [
        options.envoy_port,
        options.envoy_admin_port,
        options.emulator_port,
        options.postgres_port,
        options.redis_port,
        *DEFAULT_PORTS.values(),
    ]
    assert len(set(ports)) == len(ports)
