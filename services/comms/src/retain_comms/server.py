"""Assembly of the comms server: database, peers, provider client, queue,
servicer and sweeper. Nothing runs at import time; ``start`` builds it all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path

import grpc
import redis.asyncio
from dramatiq.brokers.redis import RedisBroker
from retain.comms.v1 import comms_pb2_grpc
from retain_runtime import db
from retain_runtime.clock import Clock
from retain_runtime.server import RunningServer, create_server
from sqlalchemy.ext.asyncio import AsyncEngine

from retain_comms.africastalking import AfricasTalkingClient
from retain_comms.callbacks import Callbacks
from retain_comms.campaigns import Campaigns
from retain_comms.ledger import Ledger
from retain_comms.peers import Peers
from retain_comms.policy import POLICY, SERVICE
from retain_comms.previews import Previews
from retain_comms.queue import SendQueue, create_broker
from retain_comms.reports import ReportWriter
from retain_comms.results import Results
from retain_comms.selection import Selector
from retain_comms.servicer import CommsServicer
from retain_comms.settings import CommsSettings
from retain_comms.store import Store
from retain_comms.sweeper import Sweeper
from retain_comms.ussd import UssdSurvey
from retain_comms.validators import VALIDATORS
from retain_comms.voice import VoiceResponder

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"


def prepare_database(url: str) -> None:
    """Create the database if missing and apply every migration."""
    db.ensure_database(url)
    db.migrate(url, MIGRATIONS)


@dataclass
class Service:
    """A started comms server and the connections it keeps open."""

    running: RunningServer
    engine: AsyncEngine
    peers: Peers
    provider: AfricasTalkingClient
    broker: RedisBroker
    sweeper: Sweeper
    sweeper_task: asyncio.Task[None]
    # ussd_redis keeps the state of USSD sessions.
    ussd_redis: redis.asyncio.Redis
    report_writer: ReportWriter

    @property
    def port(self) -> int:
        return self.running.port

    async def stop(self, grace: float = 5.0) -> None:
        """Stop serving, then the sweeper, then close every connection."""
        await self.running.stop(grace)
        await self.report_writer.stop()
        self.sweeper_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.sweeper_task
        await self.provider.aclose()
        await self.ussd_redis.aclose()
        await self.peers.close()
        await asyncio.to_thread(self.broker.close)
        await self.engine.dispose()
        log.info("Comms server stopped")


async def start(settings: CommsSettings, clock: Clock) -> Service:
    """Start the comms server on an already migrated database."""
    engine = db.async_engine(settings.service.database_url)
    store, ledger = Store(engine), Ledger(engine)
    peers = Peers(settings.service, "comms")
    provider = AfricasTalkingClient(
        settings.at_base_url,
        settings.at_username,
        settings.at_api_key,
        settings.at_sender_id,
        settings.at_timeout_seconds,
        voice_base_url=settings.at_voice_base_url,
        voice_number=settings.at_voice_number,
    )
    broker = create_broker(settings)
    queue = SendQueue(broker, settings.send_batch_size)
    selector = Selector(
        peers,
        ledger,
        settings.at_unit_price_micros,
        settings.at_voice_call_price_micros,
    )
    campaigns = Campaigns(store, ledger, selector, queue, clock)
    ussd_redis = redis.asyncio.Redis.from_url(settings.redis_url)
    callbacks = Callbacks(store, ledger, peers, clock, settings.at_callback_secret)
    servicer = CommsServicer(
        campaigns=campaigns,
        store=store,
        ledger=ledger,
        results=Results(store, ledger, peers),
        callbacks=callbacks,
        provider=provider,
        clock=clock,
        low_balance_micros=settings.at_low_balance_micros,
        previews=Previews(
            campaigns,
            selector,
            store,
            ledger,
            peers,
            provider,
            clock,
            live_account=not settings.at_is_loopback,
        ),
        ussd=UssdSurvey(peers, ussd_redis, settings.queue_namespace, clock),
        voice=VoiceResponder(peers, ledger, clock),
    )

    def register(server: grpc.aio.Server) -> None:
        comms_pb2_grpc.add_CommsServiceServicer_to_server(servicer, server)

    running = await create_server(
        settings.service, SERVICE, register, POLICY, VALIDATORS
    )
    sweeper = Sweeper(store, ledger, queue, clock, settings)
    task = asyncio.create_task(sweeper.run(), name="comms-sweeper")
    return Service(
        running,
        engine,
        peers,
        provider,
        broker,
        sweeper,
        task,
        ussd_redis,
        callbacks.report_writer,
    )
