"""The comms test stack: server, worker, peer doubles, AT emulator and a
stand-in for Envoy's callback routes.

``open_stack`` starts it on a PostgreSQL database and a Redis the caller owns,
for the ``stack`` fixture, the fault tests and ``bench/sms.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import dramatiq
import grpc
from comms_doubles import (
    FakeCustomer,
    FakeEvents,
    FakeInference,
    FakeUser,
    serve_double,
)
from google.api import httpbody_pb2
from retain.comms.v1 import comms_pb2, comms_pb2_grpc
from retain.type.v1 import channel_pb2
from retain_comms import server
from retain_comms.server import Service
from retain_comms.settings import CommsSettings
from retain_comms.worker import create_worker
from retain_emulator import AfricasTalkingEmulator
from retain_runtime.certs import CertPaths
from retain_runtime.clock import NAIROBI, Clock
from retain_runtime.credentials import aio_channel, sync_channel
from retain_runtime.money import kes

SECRET = "callback-secret-for-tests"
USERNAME = "sandbox"
API_KEY = "emulator-key"
# The AT number voice calls come from.
AT_VOICE_NUMBER = "+254711082000"
# Tuesday 10:00 in Nairobi, inside the default 07:00-19:00 send window.
MORNING = dt.datetime(2024, 3, 5, 10, 0, tzinfo=NAIROBI)
FINAL = {
    comms_pb2.MESSAGE_STATE_SUPPRESSED,
    comms_pb2.MESSAGE_STATE_DELIVERED,
    comms_pb2.MESSAGE_STATE_FAILED,
    comms_pb2.MESSAGE_STATE_DROPPED,
    comms_pb2.MESSAGE_STATE_DELIVERY_UNKNOWN,
}


class CallbackBridge:
    """Does Envoy's job for AT callbacks: a form POST to one of ROUTES becomes
    the gRPC callback with the body as HttpBody, sent with the envoy
    certificate, and an HttpBody reply becomes the HTTP reply's body."""

    ROUTES: ClassVar[dict[str, tuple[str, Any]]] = {
        "/delivery": ("ReceiveDeliveryReport", comms_pb2.ReceiveDeliveryReportRequest),
        "/inbound": ("ReceiveInboundSms", comms_pb2.ReceiveInboundSmsRequest),
        "/optout": ("ReceiveBulkOptOut", comms_pb2.ReceiveBulkOptOutRequest),
        "/ussd": ("ReceiveUssd", comms_pb2.ReceiveUssdRequest),
        "/voice": ("ReceiveVoiceEvent", comms_pb2.ReceiveVoiceEventRequest),
    }

    def __init__(self, cert_dir: Path) -> None:
        self.envoy = CertPaths.in_directory(cert_dir, "envoy")
        self.stub: comms_pb2_grpc.CommsServiceStub | None = None
        self.channel: grpc.Channel | None = None
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, route: str, secret: str = SECRET) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}{route}?secret={secret}"

    def start(self) -> None:
        self.thread.start()

    def connect(self, port: int) -> None:
        self.channel = sync_channel(f"127.0.0.1:{port}", self.envoy)
        self.stub = comms_pb2_grpc.CommsServiceStub(self.channel)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        if self.channel is not None:
            self.channel.close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        bridge = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                url = urlsplit(self.path)
                secret = parse_qs(url.query).get("secret", [""])[0]
                status, reply = bridge.forward(url.path, secret, body)
                self.send_response(status)
                if reply is not None:
                    self.send_header("Content-Type", reply.content_type)
                data = b"" if reply is None else reply.data
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        return Handler

    def forward(
        self, route: str, secret: str, body: bytes
    ) -> tuple[int, httpbody_pb2.HttpBody | None]:
        """Call the route's RPC; return the HTTP status and any HttpBody reply."""
        if self.stub is None or route not in self.ROUTES:
            return 404, None
        method, request_type = self.ROUTES[route]
        request = request_type(
            secret=secret,
            http_body=httpbody_pb2.HttpBody(
                content_type="application/x-www-form-urlencoded", data=body
            ),
        )
        try:
            reply = getattr(self.stub, method)(request, timeout=5)
        except grpc.RpcError as error:
            denied = error.code() is grpc.StatusCode.PERMISSION_DENIED  # type: ignore[attr-defined]
            return (403 if denied else 500), None
        return 200, reply if isinstance(reply, httpbody_pb2.HttpBody) else None


@dataclass
class Stack:
    """A running comms server and everything around it."""

    settings: CommsSettings
    service: Service
    clock: Clock
    comms: comms_pb2_grpc.CommsServiceStub
    user: FakeUser
    inference: FakeInference
    events: FakeEvents
    emulator: AfricasTalkingEmulator
    bridge: CallbackBridge
    # environ is what the settings were read from; worker processes get it too.
    environ: dict[str, str] = field(default_factory=dict)
    worker: dramatiq.Worker | None = None

    def add_customers(
        self, ids: range | list[int], probability: float = 0.9, consent: bool = True
    ) -> None:
        for customer_id in ids:
            self.user.add(FakeCustomer(customer_id), consent=consent)
            self.inference.scores[customer_id] = probability

    def start_worker(self) -> None:
        self.worker = create_worker(self.settings, self.clock, worker_timeout_ms=100)
        self.worker.start()

    def stop_worker(self) -> None:
        if self.worker is not None:
            self.worker.stop(timeout=10_000)
            self.worker = None

    async def create(self, **spec: Any) -> comms_pb2.Campaign:
        reply = await self.comms.CreateCampaign(
            comms_pb2.CreateCampaignRequest(spec=campaign_spec(**spec)), timeout=10
        )
        return reply.campaign

    async def approve(self, campaign_id: int) -> None:
        request = {"campaign_id": campaign_id}
        await self.comms.SubmitCampaign(
            comms_pb2.SubmitCampaignRequest(**request), timeout=10
        )
        await self.comms.ApproveCampaign(
            comms_pb2.ApproveCampaignRequest(**request), timeout=10
        )

    async def launch(self, **spec: Any) -> comms_pb2.Campaign:
        """Create, submit, approve and launch a campaign."""
        campaign = await self.create(**spec)
        await self.approve(campaign.campaign_id)
        reply = await self.comms.LaunchCampaign(
            comms_pb2.LaunchCampaignRequest(campaign_id=campaign.campaign_id),
            timeout=60,
        )
        return reply.campaign

    async def messages(
        self, campaign_id: int, state: int = 0
    ) -> list[comms_pb2.Message]:
        found: list[comms_pb2.Message] = []
        token = ""
        while True:
            reply = await self.comms.ListMessages(
                comms_pb2.ListMessagesRequest(
                    campaign_id=campaign_id,
                    state=state,
                    page_size=1000,
                    page_token=token,
                ),
                timeout=10,
            )
            found.extend(reply.messages)
            token = reply.next_page_token
            if not token:
                return found

    async def settled(
        self, campaign_id: int, timeout: float = 20.0
    ) -> list[comms_pb2.Message]:
        """Wait until every message of a campaign is final; return them."""

        async def all_final() -> list[comms_pb2.Message] | None:
            messages = await self.messages(campaign_id)
            return messages if all(m.state in FINAL for m in messages) else None

        return await eventually(all_final, timeout)


def comms_environment(
    database_url: str, cert_dir: Path, redis_url: str, at_base_url: str
) -> dict[str, str]:
    return {
        "RETAIN_COMMS_PORT": "0",
        "RETAIN_COMMS_DATABASE_URL": database_url,
        "RETAIN_CERT_DIR": str(cert_dir),
        "RETAIN_REDIS_URL": redis_url,
        "RETAIN_COMMS_QUEUE_NAMESPACE": f"test-{uuid.uuid4().hex[:8]}",
        "AT_BASE_URL": at_base_url,
        "AT_USERNAME": USERNAME,
        "AT_API_KEY": API_KEY,
        "RETAIN_AT_CALLBACK_SECRET": SECRET,
        "AT_TIMEOUT_SECONDS": "2",
        "RETAIN_WORKER_THREADS": "4",
        "RETAIN_COMMS_SWEEP_SECONDS": "0.2",
        "AT_VOICE_BASE_URL": at_base_url,
        "AT_VOICE_NUMBER": AT_VOICE_NUMBER,
    }


@contextlib.asynccontextmanager
async def open_stack(
    database_url: str,
    cert_dir: Path,
    redis_url: str,
    overrides: Mapping[str, str] | None = None,
) -> AsyncIterator[Stack]:
    """Start a comms server with its peer doubles, emulator and bridge; the
    clock starts at MORNING. overrides replace variables of comms_environment."""
    user, inference, events = FakeUser(), FakeInference(), FakeEvents()
    doubles = {
        name: await serve_double(name, servicer, cert_dir)
        for name, servicer in (
            ("user", user),
            ("inference", inference),
            ("events", events),
        )
    }
    bridge = CallbackBridge(cert_dir)
    bridge.start()
    emulator = AfricasTalkingEmulator(
        USERNAME,
        API_KEY,
        bridge.url("/delivery"),
        voice_callback_url=bridge.url("/voice"),
    )
    emulator.start()

    environ = comms_environment(database_url, cert_dir, redis_url, emulator.base_url)
    environ.update(
        {
            f"RETAIN_{name.upper()}_TARGET": f"127.0.0.1:{d.port}"
            for name, d in doubles.items()
        }
    )
    environ.update(overrides or {})
    settings = CommsSettings.from_env(environ)
    await asyncio.to_thread(server.prepare_database, database_url)
    clock = Clock.starting_at(MORNING)
    service = await server.start(settings, clock)
    bridge.connect(service.port)
    channel = aio_channel(
        f"127.0.0.1:{service.port}", CertPaths.in_directory(cert_dir, "operator")
    )
    stack = Stack(
        settings=settings,
        service=service,
        clock=clock,
        comms=comms_pb2_grpc.CommsServiceStub(channel),
        user=user,
        inference=inference,
        events=events,
        emulator=emulator,
        bridge=bridge,
        environ=environ,
    )
    try:
        yield stack
    finally:
        await asyncio.to_thread(stack.stop_worker)
        await channel.close()
        await service.stop(0)
        emulator.stop()
        bridge.stop()
        for running in doubles.values():
            await running.stop(0)


def campaign_spec(**overrides: Any) -> comms_pb2.CampaignSpec:
    values: dict[str, Any] = {
        "name": "Win back riders",
        "min_churn_probability": 0.5,
        "holdout_share": 0.25,
        "budget": kes(100_000 * 1_000_000),
        "channel": channel_pb2.CHANNEL_SMS,
        "purpose": channel_pb2.PURPOSE_MARKETING,
        "brand_name": "SafiriRide",
    }
    values.update(overrides)
    return comms_pb2.CampaignSpec(**values)


async def eventually(
    probe: Callable[[], Awaitable[Any]], timeout: float = 10.0, interval: float = 0.05
) -> Any:
    """Poll probe until it returns a truthy value; fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)
