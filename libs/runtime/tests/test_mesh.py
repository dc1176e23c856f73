"""mTLS, per-RPC allow-lists, validation and error mapping on a real server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from retain.events.v1 import events_pb2, events_pb2_grpc

from retain_runtime.callers import CallPolicy, current_caller
from retain_runtime.certs import CertPaths, issue_mesh
from retain_runtime.credentials import CHANNEL_OPTIONS, aio_channel
from retain_runtime.errors import InvalidArgument, NotFound
from retain_runtime.server import RunningServer, create_server
from retain_runtime.settings import ServiceSettings

SERVICE = "retain.events.v1.EventsService"


class StatsServicer(events_pb2_grpc.EventsServiceServicer):
    async def GetEventStats(self, request, context):  # noqa: N802
        caller = current_caller.get()
        assert caller is not None
        return events_pb2.GetEventStatsResponse(event_count=len(caller.name))

    async def DeleteCustomerEvents(self, request, context):  # noqa: N802
        if request.customer_id == 13:
            raise RuntimeError("INSERT INTO customers VALUES ('+254712345678')")
        raise NotFound(f"customer {request.customer_id} has no events")


def validate_delete(request: events_pb2.DeleteCustomerEventsRequest) -> None:
    if request.customer_id <= 0:
        raise InvalidArgument("customer_id", f"{request.customer_id} must be positive")


@pytest.fixture
async def server(cert_dir: Path) -> AsyncIterator[RunningServer]:
    settings = ServiceSettings.from_env(
        "events",
        {
            "RETAIN_EVENTS_PORT": "0",
            "RETAIN_EVENTS_DATABASE_URL": "unused",
            "RETAIN_CERT_DIR": str(cert_dir),
        },
    )
    policy = CallPolicy(
        SERVICE,
        {"GetEventStats": ["operator"], "DeleteCustomerEvents": ["operator"]},
    )
    running = await create_server(
        settings,
        SERVICE,
        lambda s: events_pb2_grpc.add_EventsServiceServicer_to_server(
            StatsServicer(), s
        ),
        policy,
        {"DeleteCustomerEvents": validate_delete},
    )
    yield running
    await running.stop(0)


def stub(port: int, paths: CertPaths) -> events_pb2_grpc.EventsServiceStub:
    return events_pb2_grpc.EventsServiceStub(aio_channel(f"127.0.0.1:{port}", paths))


async def test_allowed_caller_is_served(server: RunningServer, cert_dir: Path) -> None:
    client = stub(server.port, CertPaths.in_directory(cert_dir, "operator"))
    reply = await client.GetEventStats(events_pb2.GetEventStatsRequest(), timeout=5)
    assert reply.event_count == len("operator")


async def test_caller_outside_allow_list_is_denied(
    server: RunningServer, cert_dir: Path
) -> None:
    client = stub(server.port, CertPaths.in_directory(cert_dir, "stranger"))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.GetEventStats(events_pb2.GetEventStatsRequest(), timeout=5)
    assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert "spiffe://retain/stranger" in (caught.value.details() or "")


async def test_client_without_certificate_is_refused(
    server: RunningServer, cert_dir: Path
) -> None:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=(cert_dir / "ca.pem").read_bytes()
    )
    channel = grpc.aio.secure_channel(
        f"127.0.0.1:{server.port}", credentials, options=CHANNEL_OPTIONS
    )
    client = events_pb2_grpc.EventsServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.GetEventStats(events_pb2.GetEventStatsRequest(), timeout=5)
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE


async def test_certificate_from_another_ca_is_refused(
    server: RunningServer, cert_dir: Path, tmp_path: Path
) -> None:
    foreign = issue_mesh(tmp_path / "foreign", ["operator"])["operator"]
    # Trust our CA for the server, but present the foreign CA's client cert.
    paths = CertPaths(ca=cert_dir / "ca.pem", cert=foreign.cert, key=foreign.key)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub(server.port, paths).GetEventStats(
            events_pb2.GetEventStatsRequest(), timeout=5
        )
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE


async def test_plaintext_client_is_refused(server: RunningServer) -> None:
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    client = events_pb2_grpc.EventsServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.GetEventStats(events_pb2.GetEventStatsRequest(), timeout=5)
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE


async def test_validator_error_names_field(
    server: RunningServer, cert_dir: Path
) -> None:
    client = stub(server.port, CertPaths.in_directory(cert_dir, "operator"))
    request = events_pb2.DeleteCustomerEventsRequest(customer_id=-4)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.DeleteCustomerEvents(request, timeout=5)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == "customer_id: -4 must be positive"


async def test_domain_error_maps_to_status(
    server: RunningServer, cert_dir: Path
) -> None:
    client = stub(server.port, CertPaths.in_directory(cert_dir, "operator"))
    request = events_pb2.DeleteCustomerEventsRequest(customer_id=9)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.DeleteCustomerEvents(request, timeout=5)
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND


async def test_unexpected_error_hides_its_text(
    server: RunningServer, cert_dir: Path
) -> None:
    client = stub(server.port, CertPaths.in_directory(cert_dir, "operator"))
    request = events_pb2.DeleteCustomerEventsRequest(customer_id=13)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.DeleteCustomerEvents(request, timeout=5)
    assert caught.value.code() is grpc.StatusCode.INTERNAL
    assert "254712345678" not in caught.value.details()
    assert "server log" in caught.value.details()


async def test_unlisted_method_is_denied(server: RunningServer, cert_dir: Path) -> None:
    client = stub(server.port, CertPaths.in_directory(cert_dir, "operator"))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.ListSequences(events_pb2.ListSequencesRequest(), timeout=5)
    assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED


async def test_health_port_serves_health_only(server: RunningServer) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.health_port}")
    health = health_pb2_grpc.HealthStub(channel)
    reply = await health.Check(health_pb2.HealthCheckRequest(service=SERVICE), timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    events = events_pb2_grpc.EventsServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await events.GetEventStats(events_pb2.GetEventStatsRequest(), timeout=5)
    assert caught.value.code() is grpc.StatusCode.UNIMPLEMENTED
