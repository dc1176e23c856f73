"""Entry point of the comms worker: ``python -m retain_comms.worker``.

It runs a Dramatiq worker in this process with RETAIN_WORKER_THREADS threads,
rather than through the dramatiq CLI, whose parent stops every process when
one dies. The `retain up` supervisor restarts this process if it exits. Actors
are async and run on the event loop of Dramatiq's AsyncIO middleware, where
the Deliverer opens its database engine and channels on the first send.
"""

from __future__ import annotations

import logging
import signal
import threading

import dramatiq
from dramatiq.asyncio import get_event_loop_thread
from dramatiq.middleware import AsyncIO, default_middleware
from retain_runtime import logs
from retain_runtime.clock import Clock

from retain_comms.actors import declare_actors
from retain_comms.delivery import Deliverer
from retain_comms.queue import create_broker
from retain_comms.settings import CommsSettings

log = logging.getLogger("retain_comms.worker")

# Milliseconds that in-flight sends may take to finish after SIGTERM.
STOP_TIMEOUT_MS = 30_000


class CloseDeliverer(dramatiq.Middleware):
    """Closes the Deliverer's connections on the event loop before it stops."""

    def __init__(self, deliverer: Deliverer) -> None:
        self.deliverer = deliverer

    def after_worker_shutdown(
        self, broker: dramatiq.Broker, worker: dramatiq.Worker
    ) -> None:
        # Dramatiq runs after_* hooks in reverse order, so this runs before
        # AsyncIO stops the loop.
        loop_thread = get_event_loop_thread()
        if loop_thread is not None:
            loop_thread.run_coroutine(self.deliverer.close())


def create_worker(
    settings: CommsSettings, clock: Clock, worker_timeout_ms: int = 1000
) -> dramatiq.Worker:
    """Build a stopped worker with its own broker, actors and Deliverer."""
    deliverer = Deliverer(settings, clock)
    middleware = [m() for m in default_middleware]
    middleware += [AsyncIO(), CloseDeliverer(deliverer)]
    broker = create_broker(settings, middleware)
    declare_actors(broker, deliverer)
    return dramatiq.Worker(
        broker, worker_threads=settings.worker_threads, worker_timeout=worker_timeout_ms
    )


def main() -> None:
    settings = CommsSettings.from_env()
    service = settings.service
    logs.configure(service.log_format, service.log_level, "comms-worker")
    worker = create_worker(settings, Clock(service.clock_offset_seconds))

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    worker.start()
    log.info("Comms worker started with %d threads", settings.worker_threads)
    stop.wait()
    log.info("Comms worker stopping")
    worker.stop(timeout=STOP_TIMEOUT_MS)
    log.info("Comms worker stopped")


if __name__ == "__main__":
    main()
