"""The sweeper: periodic repairs of the ledger, run inside the comms server.

Each pass runs these steps in order:

1. Drop unsent messages past their expire_time.
2. Make DEFERRED messages whose not_before_time passed PENDING and enqueue them.
3. Enqueue again PENDING messages of running campaigns untouched for
   RETAIN_COMMS_REQUEUE_SECONDS, once no send waits in the queue, which covers
   a lost queue message or a failed enqueue.
4. Apply stored delivery reports that were never applied although a message
   now carries their provider id, as after a worker killed between recording
   a send and applying the reports that came before it.
5. Turn SENDING messages older than the sending timeout, and SUBMITTED
   messages without a final report after the report window, into
   DELIVERY_UNKNOWN.
6. Finish running campaigns that have nothing left to send.

Every move is a compare-and-set, so a duplicate enqueue or a pass racing a
worker is harmless.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

import redis
import sqlalchemy as sa
from retain_runtime.clock import Clock

from retain_comms import reports
from retain_comms.ledger import Ledger
from retain_comms.queue import SendQueue
from retain_comms.settings import CommsSettings
from retain_comms.states import MessageState
from retain_comms.store import Store, running_campaigns
from retain_comms.tables import messages

# Unapplied reports one pass applies at most.
LATE_REPORTS_PER_PASS = 1000

log = logging.getLogger(__name__)


class Sweeper:
    """Runs sweep passes every RETAIN_COMMS_SWEEP_SECONDS until cancelled."""

    def __init__(
        self,
        store: Store,
        ledger: Ledger,
        queue: SendQueue,
        clock: Clock,
        settings: CommsSettings,
    ) -> None:
        self.store = store
        self.ledger = ledger
        self.queue = queue
        self.clock = clock
        self.settings = settings

    async def run(self) -> None:
        log.info("Sweeper started, every %.1f s", self.settings.sweep_interval_seconds)
        while True:
            try:
                await self.sweep()
            except Exception:
                # A failed pass is repeated on the next tick; the ledger is
                # consistent after any partial pass.
                log.exception("Sweep pass failed")
            await asyncio.sleep(self.settings.sweep_interval_seconds)

    async def sweep(self) -> None:
        """Run one pass."""
        now = self.clock.now()
        dropped = await self.ledger.move_where(
            [MessageState.PENDING, MessageState.DEFERRED],
            MessageState.DROPPED,
            messages.c.expire_time <= now,
            now,
            reason="older than the campaign's max_age_hours",
        )
        due = await self.ledger.move_where(
            [MessageState.DEFERRED],
            MessageState.PENDING,
            messages.c.not_before_time <= now,
            now,
        )
        stale = await self._stale_pending(now)
        if due or stale:
            await asyncio.to_thread(self.queue.enqueue, due + stale)
        late = await self._apply_late_reports(now)
        interrupted, unreported = await self._give_up(now)
        finished = await self.store.finish_idle_campaigns(now)
        self._log(dropped, due, stale, late, interrupted, unreported, finished)

    async def _apply_late_reports(self, now: dt.datetime) -> list[int]:
        """Apply stored reports that a message carries the provider id of but
        that were never applied, and return their ids.

        The worker applies the reports that came before it recorded a send
        right after recording it, and a worker killed in between leaves them.
        """
        waiting = await self.ledger.reports_of_carried_ids(LATE_REPORTS_PER_PASS)
        await reports.apply_waiting(self.ledger, waiting, now)
        return [report.report_id for report in waiting]

    async def _stale_pending(self, now: dt.datetime) -> list[int]:
        """Touch and return the PENDING messages to enqueue again.

        While sends wait in the queue this returns none. A send enqueued again
        would join the back of the queue anyway. Without this rule, a backlog
        that lasts longer than requeue_after_seconds gets a duplicate of every
        waiting send on each pass.
        """
        try:
            waiting = await asyncio.to_thread(self.queue.waiting)
        except redis.RedisError as error:
            log.warning(
                "Reading the queue length from Redis failed, so no stale send "
                "is enqueued again in this pass: %r",
                error,
            )
            return []
        if waiting:
            # NOTE: a queue that never empties, because new sends keep
            # arriving, also holds back sends lost from Redis until it does.
            return []
        return await self.ledger.touch_pending(
            sa.and_(
                messages.c.update_time < self._ago(now, "requeue_after_seconds"),
                messages.c.campaign_id.in_(running_campaigns()),
            ),
            now,
        )

    async def _give_up(self, now: dt.datetime) -> tuple[list[int], list[int]]:
        """Turn stuck SENDING and unreported SUBMITTED messages into
        DELIVERY_UNKNOWN; they are never sent again."""
        interrupted = await self.ledger.move_where(
            [MessageState.SENDING],
            MessageState.DELIVERY_UNKNOWN,
            messages.c.update_time < self._ago(now, "sending_timeout_seconds"),
            now,
            reason="send interrupted",
            attempt_count=1,
        )
        unreported = await self.ledger.move_where(
            [MessageState.SUBMITTED],
            MessageState.DELIVERY_UNKNOWN,
            messages.c.submit_time < self._ago(now, "report_window_seconds"),
            now,
            reason="no final delivery report",
        )
        return interrupted, unreported

    def _ago(self, now: dt.datetime, setting: str) -> dt.datetime:
        return now - dt.timedelta(seconds=getattr(self.settings, setting))

    @staticmethod
    def _log(*moved: list[int]) -> None:
        if not any(moved):
            return
        dropped, due, stale, late, interrupted, unreported, finished = map(len, moved)
        log.info(
            "Sweep: %d dropped, %d due, %d re-enqueued, %d reports applied late, "
            "%d interrupted, %d unreported, %d campaigns finished",
            dropped,
            due,
            stale,
            late,
            interrupted,
            unreported,
            finished,
        )
