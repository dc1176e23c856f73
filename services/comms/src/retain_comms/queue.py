"""The Dramatiq queue between the comms server and its workers.

A queue message carries a batch of message ids and nothing else, because the
ledger stores the rest. The worker handles a batch with one load, one claim,
one consent check and one provider request per distinct text. Building a RedisBroker opens no connection: redis-py connects on the
first command, so the broker can be built before a worker forks or starts.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.common import current_millis

from retain_comms.settings import CommsSettings

log = logging.getLogger(__name__)

QUEUE_NAME = "comms_send"
SEND_ACTOR = "send_messages"

# Milliseconds without a heartbeat after which another worker takes over the
# unacknowledged messages of a dead one.
HEARTBEAT_TIMEOUT_MS = 30_000

# Queue messages enqueued per Redis round trip.
PIPELINE_BATCH = 100


def create_broker(
    settings: CommsSettings, middleware: Sequence[dramatiq.Middleware] | None = None
) -> RedisBroker:
    """Build the broker from settings; it connects on first use."""
    return RedisBroker(
        url=settings.redis_url,
        namespace=settings.queue_namespace,
        heartbeat_timeout=HEARTBEAT_TIMEOUT_MS,
        middleware=middleware,
    )


class SendQueue:
    """Enqueues send_messages for batches of message ids, from the comms server."""

    def __init__(self, broker: RedisBroker, batch_size: int) -> None:
        self.broker = broker
        self.batch_size = batch_size
        broker.declare_queue(QUEUE_NAME)

    def enqueue(self, message_ids: Sequence[int]) -> int:
        """Enqueue the ids in batches of batch_size; return how many ids were
        enqueued.

        This blocks on Redis, so async callers run it in a thread.
        """
        batches = [
            list(message_ids[start : start + self.batch_size])
            for start in range(0, len(message_ids), self.batch_size)
        ]
        for start in range(0, len(batches), PIPELINE_BATCH):
            self._enqueue_batches(batches[start : start + PIPELINE_BATCH])
        if message_ids:
            log.debug(
                "Enqueued %d sends in %d queue messages", len(message_ids), len(batches)
            )
        return len(message_ids)

    def _enqueue_batches(self, batches: Sequence[list[int]]) -> None:
        """Enqueue one queue message per batch in one Redis round trip.

        NOTE: this does what RedisBroker.enqueue does for one message, through
        the broker's "dispatch" script in a pipeline, with the arguments that
        dispatch.lua of Dramatiq 2.x documents. Check it when upgrading
        Dramatiq; the launch test counts the queue after 20,000 enqueues.
        """
        broker = self.broker
        pipe = broker.client.pipeline(transaction=False)
        queued = []
        for batch in batches:
            message = _send_message(batch).copy(
                options={"redis_message_id": str(uuid.uuid4())}
            )
            broker.emit_before("enqueue", message, None)
            broker.scripts["dispatch"](
                keys=[broker.namespace],
                args=[
                    "enqueue",
                    current_millis(),
                    QUEUE_NAME,
                    broker.broker_id,
                    broker.heartbeat_timeout,
                    broker.dead_message_ttl,
                    0,
                    broker._max_unpack_size(),
                    message.options["redis_message_id"],
                    message.encode(),
                ],
                client=pipe,
            )
            queued.append(message)
        pipe.execute()
        for message in queued:
            broker.emit_after("enqueue", message, None)

    def depth(self) -> int:
        """Return how many queue messages Redis stores, waiting or held by a
        worker and not yet acknowledged, including retries waiting for their
        time."""
        return int(self.broker.do_qsize(QUEUE_NAME))

    def waiting(self) -> int:
        """Return how many queue messages wait in Redis for a worker to fetch.

        NOTE: Dramatiq 2.x keeps the ids of a queue's waiting messages in the
        list "<namespace>:<queue name>" (see its dispatch.lua). Check this
        key when upgrading Dramatiq; the sweeper tests count it.
        """
        key = f"{self.broker.namespace}:{QUEUE_NAME}"
        return int(self.broker.client.llen(key))


def _send_message(message_ids: list[int]) -> dramatiq.Message[None]:
    return dramatiq.Message(
        queue_name=QUEUE_NAME,
        actor_name=SEND_ACTOR,
        args=(message_ids,),
        kwargs={},
        options={},
    )
