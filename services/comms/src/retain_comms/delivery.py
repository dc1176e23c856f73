"""One send, as the worker performs it for a message id.

The steps: load the message, leave it if it is no longer PENDING or its
campaign is not running, drop it if too old, defer it outside the send
window, claim it PENDING -> SENDING, re-check consent and fetch the number
from the user service, fill the template, hand it to Africa's Talking, and
record the outcome. Only the claim's winner sends, so a duplicate queue
message sends nothing.

Database engines, gRPC channels and the HTTP client open on the first send,
inside the worker process, never before it starts.
"""

from __future__ import annotations

import asyncio
import logging

from retain.comms.v1 import comms_pb2
from retain.type.v1 import channel_pb2
from retain.user.v1 import user_pb2
from retain_runtime import db
from retain_runtime.clock import Clock
from retain_runtime.errors import Unavailable
from retain_runtime.logs import mask_phone

from retain_comms import reports, sms, window
from retain_comms.africastalking import (
    AfricasTalkingClient,
    Outcome,
    ProviderRejected,
    ProviderUnavailable,
    SendResult,
)
from retain_comms.ledger import Ledger
from retain_comms.peers import Peers
from retain_comms.selection import call_peer
from retain_comms.settings import CommsSettings
from retain_comms.states import CampaignStatus, MessageState
from retain_comms.store import Row, Store

log = logging.getLogger(__name__)


class Deliverer:
    """Sends queued messages; one per worker process, shared by its threads."""

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
            self.store = Store(self.engine)
            self.peers = Peers(s.service, "worker")
            self.provider = AfricasTalkingClient(
                s.at_base_url,
                s.at_username,
                s.at_api_key,
                s.at_sender_id,
                s.at_timeout_seconds,
            )
            self._opened = True
            log.info("Worker opened its database, peer channels and provider client")

    async def close(self) -> None:
        async with self._lock:
            if not self._opened:
                return
            await self.provider.aclose()
            await self.peers.close()
            await self.engine.dispose()
            self._opened = False
            log.info("Worker closed its database, peer channels and provider client")

    async def send(self, message_id: int) -> None:
        await self._open()
        row = await self.ledger.load_for_send(message_id)
        if row is None:
            log.warning("Message %d does not exist; nothing to send", message_id)
            return
        if not await self._may_claim(row):
            return
        claimed = await self.ledger.move(
            message_id, [MessageState.PENDING], MessageState.SENDING, self.clock.now()
        )
        if claimed is None:
            log.debug("Message %d was claimed by another delivery", message_id)
            return
        await self._deliver(claimed)

    async def _may_claim(self, row: Row) -> bool:
        """Return whether the message should be sent now; drop or defer it if not."""
        if row.state != MessageState.PENDING:
            log.debug("Message %d is %s; nothing to send", row.message_id, row.state)
            return False
        if row.stopped or row.campaign_status != CampaignStatus.RUNNING:
            log.debug("Message %d waits: its campaign is not running", row.message_id)
            return False
        now = self.clock.now()
        if now >= row.expire_time:
            await self.ledger.move(
                row.message_id,
                [MessageState.PENDING],
                MessageState.DROPPED,
                now,
                reason="older than the campaign's max_age_hours",
            )
            return False
        send_window = comms_pb2.CampaignSpec.FromString(row.campaign_spec).send_window
        start, end = send_window.start_minute, send_window.end_minute
        if not window.is_open(now, start, end):
            await self.ledger.move(
                row.message_id,
                [MessageState.PENDING],
                MessageState.DEFERRED,
                now,
                not_before_time=window.next_opening(now, start, end),
            )
            return False
        return True

    async def _deliver(self, message: Row) -> None:
        """Re-check consent, fill the template and hand the message over."""
        try:
            contact = await self._contact(message)
        except Unavailable:
            await self._release(message.message_id)
            raise
        if contact is None:
            await self._finish(
                message.message_id, MessageState.SUPPRESSED, reason="no consent"
            )
            return
        if contact.fictitious and not self.settings.at_is_loopback:
            await self._finish(
                message.message_id,
                MessageState.SUPPRESSED,
                reason="fictitious number on a live account",
            )
            return
        try:
            text = sms.fill_slots(
                message.template, contact.first_name, message.language
            )
        except sms.TemplateError as error:
            await self._finish(
                message.message_id, MessageState.FAILED, reason=str(error)
            )
            return
        try:
            result = await self.provider.send(contact.phone_number, text)
        except ProviderUnavailable:
            await self._release(message.message_id)
            raise
        except ProviderRejected as error:
            await self._release(message.message_id)
            await self._pause(message.campaign_id, "provider_rejected", str(error))
            return
        await self._record(message, result, contact)

    async def _contact(self, message: Row) -> user_pb2.Contact | None:
        reply = await call_peer(
            self.peers.user.GetContacts,
            user_pb2.GetContactsRequest(
                customer_ids=[message.customer_id],
                channel=message.channel,
                purpose=message.purpose,
            ),
            "user.GetContacts",
        )
        for contact in reply.contacts:
            if contact.customer_id == message.customer_id:
                return contact
        return None

    async def _record(
        self, message: Row, result: SendResult, contact: user_pb2.Contact
    ) -> None:
        """Record what the provider did with a claimed message."""
        if result.outcome is Outcome.SUBMITTED:
            await self._record_submitted(message.message_id, result)
        elif result.outcome is Outcome.INSUFFICIENT_BALANCE:
            await self._release(message.message_id)
            await self._pause(
                message.campaign_id,
                "insufficient_balance",
                "insufficient provider balance",
            )
        elif result.outcome is Outcome.UNKNOWN:
            await self._finish(
                message.message_id,
                MessageState.DELIVERY_UNKNOWN,
                reason=result.reason,
                attempt_count=1,
            )
        else:
            # The opt-out is recorded first, so a final ledger row implies it.
            if result.outcome is Outcome.BLACKLISTED:
                await self._record_blacklist(contact)
            await self._finish(
                message.message_id,
                MessageState.FAILED,
                reason=result.reason,
                provider_status=result.provider_status,
                attempt_count=1,
            )

    async def _record_submitted(self, message_id: int, result: SendResult) -> None:
        now = self.clock.now()
        await self._finish(
            message_id,
            MessageState.SUBMITTED,
            provider_message_id=result.provider_message_id,
            provider_status=result.provider_status,
            cost_micros=result.cost_micros,
            cost_currency=result.currency,
            attempt_count=1,
            submit_time=now,
        )
        await reports.apply_waiting_reports(
            self.ledger, result.provider_message_id, message_id, now
        )

    async def _finish(
        self, message_id: int, target: MessageState, **values: object
    ) -> None:
        moved = await self.ledger.move(
            message_id, [MessageState.SENDING], target, self.clock.now(), **values
        )
        if moved is None:
            log.error(
                "Message %d left SENDING before the worker recorded %s",
                message_id,
                target,
            )
        elif target is MessageState.SUBMITTED:
            log.debug("Message %d is submitted", message_id)
        else:
            log.info("Message %d is %s: %s", message_id, target, values.get("reason"))

    async def _release(self, message_id: int) -> None:
        """Put a claimed message back to PENDING; only when nothing was sent."""
        await self.ledger.move(
            message_id, [MessageState.SENDING], MessageState.PENDING, self.clock.now()
        )
        log.info(
            "Message %d is PENDING again; nothing reached the provider", message_id
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

    async def _record_blacklist(self, contact: user_pb2.Contact) -> None:
        try:
            await call_peer(
                self.peers.user.RecordOptOut,
                user_pb2.RecordOptOutRequest(
                    phone_number=contact.phone_number,
                    source=user_pb2.CONSENT_SOURCE_PROVIDER_OPT_OUT,
                    channel=channel_pb2.CHANNEL_SMS,
                    evidence="Africa's Talking status UserInBlacklist",
                ),
                "user.RecordOptOut",
            )
        except Unavailable:
            log.exception(
                "Opt-out of blacklisted %s was not recorded",
                mask_phone(contact.phone_number),
            )
