"""The Dramatiq actors of the comms worker.

Actors are declared by a function on a broker passed in, not by decorators at
import time: a module-level ``@dramatiq.actor`` would build Dramatiq's default
broker (RabbitMQ, or Redis on 127.0.0.1:6379) as a side effect of importing,
before settings are read. The worker entry point builds the broker from
RETAIN_REDIS_URL, then declares the actors on it, so importing this module
does nothing and tests can declare them on a broker of their own.
"""

from __future__ import annotations

import dramatiq

from retain_comms.delivery import Deliverer
from retain_comms.queue import QUEUE_NAME, SEND_ACTOR

# With the default AT_TIMEOUT_SECONDS a send makes at most three HTTP attempts
# of about 15 s each and two peer calls of up to 30 s, so two minutes bounds
# it. Retries cover a peer or the provider being down before anything was
# sent, and the ledger's claim makes a retry after a send a no-op.
SEND_OPTIONS = {
    "max_retries": 3,
    "min_backoff": 1_000,
    "max_backoff": 60_000,
    "time_limit": 120_000,
}


def declare_actors(broker: dramatiq.Broker, deliverer: Deliverer) -> dramatiq.Actor:
    """Declare send_message on broker and return it."""

    async def send_message(message_id: int) -> None:
        await deliverer.send(message_id)

    return dramatiq.actor(
        send_message,
        actor_name=SEND_ACTOR,
        queue_name=QUEUE_NAME,
        broker=broker,
        **SEND_OPTIONS,
    )
