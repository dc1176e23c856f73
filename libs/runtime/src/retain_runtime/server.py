"""Assembly of a service's grpc.aio server and its lifetime.

``create_server`` returns the started mTLS server with reflection, its bound
port (port 0 picks a free one, as tests do) and a separate plaintext server
that exposes only health checking, for orchestrator probes.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from retain_runtime.callers import CallPolicy
from retain_runtime.credentials import MAX_MESSAGE_BYTES, server_credentials
from retain_runtime.interceptor import ServiceInterceptor, Validator
from retain_runtime.settings import ServiceSettings

log = logging.getLogger(__name__)

SERVER_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.so_reuseport", 0),
]


@dataclass
class RunningServer:
    """A started service: the mesh server, its port and the health server."""

    server: grpc.aio.Server
    port: int
    health_server: grpc.aio.Server
    health_port: int
    health: health.HealthServicer

    async def stop(self, grace: float = 5.0) -> None:
        """Mark the service not serving, then stop both servers gracefully."""
        self.health.enter_graceful_shutdown()
        await self.server.stop(grace)
        await self.health_server.stop(grace)


async def create_server(
    settings: ServiceSettings,
    service_name: str,
    register: Callable[[grpc.aio.Server], None],
    policy: CallPolicy,
    validators: Mapping[str, Validator] | None = None,
    extra_interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
) -> RunningServer:
    """Build, bind and start the mTLS server and the plaintext health server."""
    interceptors = [ServiceInterceptor(policy, validators), *extra_interceptors]
    server = grpc.aio.server(interceptors=interceptors, options=SERVER_OPTIONS)
    register(server)

    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        [service_name, health.SERVICE_NAME, reflection.SERVICE_NAME], server
    )
    address = f"{settings.host}:{settings.port}"
    port = server.add_secure_port(address, server_credentials(settings.certs))

    health_server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, health_server)
    health_port = health_server.add_insecure_port(
        f"{settings.host}:{settings.health_port}"
    )

    await server.start()
    await health_server.start()
    for name in ("", service_name):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info(
        "Serving %s on %s:%d (mTLS), health on %s:%d",
        service_name, settings.host, port, settings.host, health_port,
    )
    return RunningServer(server, port, health_server, health_port, health_servicer)


async def wait_for_signal() -> None:
    """Return when the process receives SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
