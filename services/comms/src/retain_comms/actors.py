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

# A batch waits at most RATE_WAIT_SECONDS (30 s) for send tokens. It then
# starts provider requests for batch_send_seconds (60 s, including a
# GetContacts call of up to 30 s) and puts the messages of requests not
# started back to PENDING for a retry. A request started at the end makes at
# most three attempts of 5 s to connect plus AT_TIMEOUT_SECONDS (at most 15),
# with backoff between them, and recording opt-outs takes at most one peer
# call of 30 s. So a batch ends within about 185 s, inside the time limit. A
# batch cut short by the limit leaves its claimed messages SENDING; they
# become DELIVERY_UNKNOWN and are never sent twice. Retries cover a peer or
# the provider being down before anything was sent, and the ledger's claim
# makes a retry after a send a no-op.
SEND_OPTIONS = {
    "max_retries": 3,
    "min_backoff": 1_000,
    "max_backoff": 60_000,
    "time_limit": 210_000,
}


def declare_actors(broker: dramatiq.Broker, deliverer: Deliverer) -> dramatiq.Actor:
    """Declare send_messages on broker and return it."""

    async def send_messages(message_ids: list[int]) -> None:
        await deliverer.send_batch(message_ids)

    return dramatiq.actor(
        send_messages,
        actor_name=SEND_ACTOR,
        queue_name=QUEUE_NAME,
        broker=broker,
        **SEND_OPTIONS,
    )
