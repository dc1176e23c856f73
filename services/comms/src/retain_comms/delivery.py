"""Delivery of one batch of messages, as the worker performs it.

The steps: load the batch, leave messages that are no longer PENDING or whose
campaign is not running, drop those too old, defer those outside the send
window, take send tokens from the shared rate limit, then in one transaction
suppress messages over the frequency cap and claim the rest PENDING ->
SENDING. Consent is re-checked and the numbers fetched from the user service
with one call, the templates filled, and recipients of the same text share
one request to Africa's Talking. Every outcome is recorded with one
statement. Only the claim's winner sends, so a duplicate queue message sends
nothing.

Database engines, gRPC channels, the Redis client and the HTTP client open on
the first batch, inside the worker process, never before it starts.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import redis.asyncio
from retain.comms.v1 import comms_pb2
from retain.type.v1 import channel_pb2
from retain.user.v1 import user_pb2
from retain_runtime import db
from retain_runtime.clock import Clock
from retain_runtime.errors import Unavailable
from retain_runtime.logs import mask_phone

from retain_comms import reports, window
from retain_comms.africastalking import (
    AfricasTalkingClient,
    Outcome,
    ProviderRejected,
    ProviderUnavailable,
)
from retain_comms.batches import BatchLedger, CapRule, MessageOutcome
from retain_comms.ledger import Ledger
from retain_comms.peers import Peers
from retain_comms.ratelimit import SendRateLimiter
from retain_comms.selection import call_peer
from retain_comms.sending import (
    Kind,
    ProviderRequest,
    call_outcome,
    plan_requests,
    sms_outcome,
)
from retain_comms.settings import RATE_WAIT_SECONDS, CommsSettings
from retain_comms.states import CampaignStatus, MessageState
from retain_comms.store import Row, Store
from retain_comms.tables import messages

log = logging.getLogger(__name__)

# Provider requests of one batch in flight at once.
REQUESTS_AT_ONCE = 8


@dataclass
class Verdicts:
    """The verdicts on the provider requests of a batch, to record in the
    ledger."""

    outcomes: list[MessageOutcome] = field(default_factory=list)
    # released are message ids that nothing reached the provider for.
    released: list[int] = field(default_factory=list)
    # pauses are (campaign id, alert kind, reason) of campaigns to pause.
    pauses: list[tuple[int, str, str]] = field(default_factory=list)
    # blacklisted are numbers AT returned the status UserInBlacklist for.
    blacklisted: list[str] = field(default_factory=list)
    unavailable: bool = False
    # late is true when requests were not made because the batch ran out of
    # time to start them.
    late: bool = False

    def merge(self, other: Verdicts) -> None:
        self.outcomes += other.outcomes
        self.released += other.released
        self.pauses += other.pauses
        self.blacklisted += other.blacklisted
        self.unavailable = self.unavailable or other.unavailable
        self.late = self.late or other.late


class Deliverer:
    """Sends batches of queued messages; one per worker process, shared by its
    threads."""

    def __init__(self, settings: CommsSettings, clock: Clock) -> None:
        self.settings = settings
        self.clock = clock
        self._lock = asyncio.Lock()
        self._opened = False

    async def _open(self) -> None:
        async with self._lock:
            if self._opened:
                return
            s = self.settings
            self.engine = db.async_engine(s.service.database_url, s.worker_threads)
            self.ledger = Ledger(self.engine)
            self.batches = BatchLedger(self.engine)
            self.store = Store(self.engine)
            self.peers = Peers(s.service, "worker")
            self.provider = AfricasTalkingClient(
                s.at_base_url,
                s.at_username,
                s.at_api_key,
                s.at_sender_id,
                s.at_timeout_seconds,
                voice_base_url=s.at_voice_base_url,
                voice_number=s.at_voice_number,
            )
            self.redis = redis.asyncio.Redis.from_url(s.redis_url)
            self.limiter = SendRateLimiter(
                self.redis, s.queue_namespace, s.at_send_rate_per_second
            )
            self._opened = True
            log.info("Worker opened its database, peer channels and provider client")

    async def close(self) -> None:
        async with self._lock:
            if not self._opened:
                return
            await self.provider.aclose()
            await self.redis.aclose()
            await self.peers.close()
            await self.engine.dispose()
            self._opened = False
            log.info("Worker closed its database, peer channels and provider client")

    async def send_batch(self, message_ids: Sequence[int]) -> None:
        await self._open()
        now = self.clock.now()
        rows = await self.batches.load(message_ids)
        if len(rows) < len(set(message_ids)):
            missing = sorted(set(message_ids) - {row.message_id for row in rows})
            log.warning("Messages %s do not exist; nothing to send", missing)
        ready, caps = await self._screen(rows, now)
        if not ready:
            return
        await self.limiter.acquire(len(ready), RATE_WAIT_SECONDS)
        # Requests start only before this time, so the batch ends within the
        # actor's time limit however slow the provider is.
        deadline = asyncio.get_running_loop().time() + self.settings.batch_send_seconds
        claimed, capped = await self.batches.claim(ready, caps, self.clock.now())
        if capped:
            log.info("Messages %s are suppressed by the frequency cap", capped)
        if len(claimed) < len(ready) - len(capped):
            log.debug("Some messages were claimed by another delivery")
        if claimed:
            await self._deliver(claimed, deadline)

    async def _screen(
        self, rows: Sequence[Row], now: dt.datetime
    ) -> tuple[list[Row], dict[int, CapRule]]:
        """Return the messages to claim now, with the cap rule of those the
        frequency cap applies to; drop or defer the ones due for it."""
        ready: list[Row] = []
        caps: dict[int, CapRule] = {}
        expired: list[int] = []
        deferred: dict[dt.datetime, list[int]] = collections.defaultdict(list)
        specs: dict[int, comms_pb2.CampaignSpec] = {}
        for row in rows:
            if row.state != MessageState.PENDING:
                log.debug(
                    "Message %d is %s; nothing to send", row.message_id, row.state
                )
                continue
            if row.stopped or row.campaign_status != CampaignStatus.RUNNING:
                log.debug(
                    "Message %d waits: its campaign is not running", row.message_id
                )
                continue
            if now >= row.expire_time:
                expired.append(row.message_id)
                continue
            if row.campaign_id not in specs:
                specs[row.campaign_id] = comms_pb2.CampaignSpec.FromString(
                    row.campaign_spec
                )
            spec = specs[row.campaign_id]
            start, end = spec.send_window.start_minute, spec.send_window.end_minute
            if not window.is_open(now, start, end):
                deferred[window.next_opening(now, start, end)].append(row.message_id)
                continue
            rule = _cap_rule(row, spec, now)
            if rule is not None:
                caps[row.message_id] = rule
            ready.append(row)
        await self._drop_and_defer(expired, deferred, now)
        return ready, caps

    async def _drop_and_defer(
        self,
        expired: list[int],
        deferred: dict[dt.datetime, list[int]],
        now: dt.datetime,
    ) -> None:
        if expired:
            await self.ledger.move_where(
                [MessageState.PENDING],
                MessageState.DROPPED,
                messages.c.message_id.in_(expired),
                now,
                reason="older than the campaign's max_age_hours",
            )
        for opening, ids in deferred.items():
            await self.ledger.move_where(
                [MessageState.PENDING],
                MessageState.DEFERRED,
                messages.c.message_id.in_(ids),
                now,
                not_before_time=opening,
            )

    async def _deliver(self, claimed: list[Row], deadline: float) -> None:
        """Re-check consent, fill the templates and hand the batch over."""
        try:
            contacts = await self._contacts(claimed)
        except Unavailable:
            await self._release([row.message_id for row in claimed])
            raise
        plan = plan_requests(claimed, contacts, not self.settings.at_is_loopback)
        slots = asyncio.Semaphore(REQUESTS_AT_ONCE)
        results = await asyncio.gather(
            *(self._send(request, slots, deadline) for request in plan.requests),
            return_exceptions=True,
        )
        verdicts = Verdicts(outcomes=plan.outcomes)
        errors = []
        for result in results:
            if isinstance(result, BaseException):
                errors.append(result)
            else:
                verdicts.merge(result)
        await self._apply(verdicts)
        if errors:
            # Messages of the failed requests stay SENDING, so the sweeper
            # makes them DELIVERY_UNKNOWN rather than risk a duplicate.
            for error in errors[1:]:
                log.error("A provider request failed: %r", error)
            raise errors[0]
        if verdicts.unavailable:
            raise ProviderUnavailable(
                "the provider was unavailable; the released messages are sent "
                "again when Dramatiq retries the batch"
            )
        if verdicts.late:
            raise ProviderUnavailable(
                f"the batch ran out of its {self.settings.batch_send_seconds:g} s to "
                "start requests; the released messages are sent again when "
                "Dramatiq retries the batch"
            )

    async def _contacts(self, rows: Sequence[Row]) -> dict[int, user_pb2.Contact]:
        """Return the contacts of the customers who still hold consent for
        their message's channel and purpose, with one call per pair."""
        groups: dict[tuple[int, int], list[int]] = collections.defaultdict(list)
        for row in rows:
            groups[(row.channel, row.purpose)].append(row.customer_id)
        contacts: dict[int, user_pb2.Contact] = {}
        for (channel, purpose), customer_ids in groups.items():
            reply = await call_peer(
                self.peers.user.GetContacts,
                user_pb2.GetContactsRequest(
                    customer_ids=customer_ids, channel=channel, purpose=purpose
                ),
                "user.GetContacts",
            )
            contacts.update((c.customer_id, c) for c in reply.contacts)
        return contacts

    async def _send(
        self, request: ProviderRequest, slots: asyncio.Semaphore, deadline: float
    ) -> Verdicts:
        """Make one provider request once a slot is free, unless the deadline
        has passed by then; return its verdicts."""
        numbers = list(request.messages)
        ids = [row.message_id for row in request.messages.values()]
        async with slots:
            if asyncio.get_running_loop().time() >= deadline:
                log.warning(
                    "Messages %s go back to pending: their batch has no time "
                    "left to start a request",
                    ids,
                )
                return Verdicts(released=ids, late=True)
            try:
                if request.kind is Kind.VOICE:
                    calls = await self.provider.call_bulk(numbers)
                    outcomes = [
                        call_outcome(row.message_id, calls[number])
                        for number, row in request.messages.items()
                    ]
                    return Verdicts(outcomes=outcomes)
                sent = await self.provider.send_bulk(numbers, request.text)
            except ProviderUnavailable as error:
                log.warning("Messages %s were not sent: %s", ids, error)
                return Verdicts(released=ids, unavailable=True)
            except ProviderRejected as error:
                return Verdicts(released=ids, pauses=_pauses(request, error))
        verdicts = Verdicts()
        for number, row in request.messages.items():
            outcome = sms_outcome(row.message_id, sent[number])
            if outcome is None:
                verdicts.released.append(row.message_id)
                verdicts.pauses.append(
                    (
                        row.campaign_id,
                        "insufficient_balance",
                        "insufficient provider balance",
                    )
                )
                continue
            if sent[number].outcome is Outcome.BLACKLISTED:
                verdicts.blacklisted.append(number)
            verdicts.outcomes.append(outcome)
        return verdicts

    async def _apply(self, verdicts: Verdicts) -> None:
        """Record the verdicts of a batch: opt-outs first, so a final ledger
        row implies its opt-out, then every outcome in one statement.

        The opt-outs are recorded at once, so a hung user service delays the
        batch by one call's timeout, not one per blacklisted number.
        """
        await asyncio.gather(
            *(self._record_blacklist(number) for number in verdicts.blacklisted)
        )
        now = self.clock.now()
        moved = await self.batches.record(verdicts.outcomes, now)
        for outcome in verdicts.outcomes:
            if outcome.message_id not in moved:
                log.error(
                    "Message %d left SENDING before the worker recorded %s",
                    outcome.message_id,
                    outcome.state,
                )
            elif outcome.state is not MessageState.SUBMITTED:
                log.info(
                    "Message %d is %s: %s",
                    outcome.message_id,
                    outcome.state,
                    outcome.reason,
                )
        if verdicts.released:
            await self._release(verdicts.released)
        for campaign_id, kind, reason in dict.fromkeys(verdicts.pauses):
            await self._pause(campaign_id, kind, reason)
        submitted = {
            o.provider_message_id: o.message_id
            for o in verdicts.outcomes
            if o.state is MessageState.SUBMITTED
            and o.message_id in moved
            and o.provider_message_id
        }
        if submitted:
            waiting = await self.batches.unapplied_reports(list(submitted))
            await reports.apply_waiting(self.ledger, waiting, now)

    async def _release(self, message_ids: list[int]) -> None:
        """Put claimed messages back to PENDING; only when nothing was sent."""
        released = await self.batches.release(message_ids, self.clock.now())
        log.info(
            "Messages %s are PENDING again; nothing reached the provider", released
        )

    async def _pause(self, campaign_id: int, kind: str, reason: str) -> None:
        now = self.clock.now()
        paused = await self.store.move_campaign(
            campaign_id,
            [CampaignStatus.RUNNING],
            CampaignStatus.PAUSED,
            now,
            status_reason=reason,
        )
        if paused is not None:
            await self.store.add_alert(
                kind, f"Campaign {campaign_id} paused: {reason}", campaign_id, now
            )
            log.error("Paused campaign %d: %s", campaign_id, reason)

    async def _record_blacklist(self, phone_number: str) -> None:
        try:
            await call_peer(
                self.peers.user.RecordOptOut,
                user_pb2.RecordOptOutRequest(
                    phone_number=phone_number,
                    source=user_pb2.CONSENT_SOURCE_PROVIDER_OPT_OUT,
                    channel=channel_pb2.CHANNEL_SMS,
                    evidence="Africa's Talking status UserInBlacklist",
                ),
                "user.RecordOptOut",
            )
        except Unavailable:
            log.exception(
                "Opt-out of blacklisted %s was not recorded", mask_phone(phone_number)
            )


def _cap_rule(
    row: Row, spec: comms_pb2.CampaignSpec, now: dt.datetime
) -> CapRule | None:
    """Return the frequency cap of a marketing message, None if it has none."""
    cap = spec.frequency_cap
    if row.purpose != channel_pb2.PURPOSE_MARKETING or cap.max_messages == 0:
        return None
    return CapRule(cap.max_messages, now - dt.timedelta(days=cap.period_days))


def _pauses(
    request: ProviderRequest, error: ProviderRejected
) -> list[tuple[int, str, str]]:
    campaign_ids = sorted({row.campaign_id for row in request.messages.values()})
    return [(c, "provider_rejected", str(error)) for c in campaign_ids]
