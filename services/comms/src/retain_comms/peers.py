"""Clients of the services comms calls: user, inference and events.

The comms server dials them as "comms", the worker as "worker"; each process
opens its own channels after it started.
"""

from __future__ import annotations

import grpc
from retain.events.v1 import events_pb2_grpc
from retain.inference.v1 import inference_pb2_grpc
from retain.user.v1 import user_pb2_grpc
from retain_runtime.certs import CertPaths
from retain_runtime.credentials import aio_channel
from retain_runtime.settings import ServiceSettings

# Seconds one call to a peer may take before it fails with DEADLINE_EXCEEDED.
CALL_TIMEOUT = 30.0


class Peers:
    """Open channels and stubs of the three peers, under one mesh identity."""

    def __init__(self, settings: ServiceSettings, identity: str) -> None:
        paths = settings.cert_paths(identity)
        self._channels: list[grpc.aio.Channel] = []
        self.user = user_pb2_grpc.UserServiceStub(self._open(settings, "user", paths))
        self.inference = inference_pb2_grpc.InferenceServiceStub(
            self._open(settings, "inference", paths)
        )
        self.events = events_pb2_grpc.EventsServiceStub(
            self._open(settings, "events", paths)
        )

    def _open(
        self, settings: ServiceSettings, peer: str, paths: CertPaths
    ) -> grpc.aio.Channel:
        channel = aio_channel(settings.targets[peer], paths)
        self._channels.append(channel)
        return channel

    async def close(self) -> None:
        for channel in self._channels:
            await channel.close()
