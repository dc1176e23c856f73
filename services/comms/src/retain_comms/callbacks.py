"""Africa's Talking callbacks: delivery reports, inbound SMS and bulk opt-outs.

The USSD survey (ussd.py) and voice responses (voice.py) are callbacks too and
check the same secret.

Each callback checks the shared secret first, with a constant-time compare,
so a caller without it learns nothing and changes nothing. Bodies are the
form-encoded fields AT posts, passed through Envoy as google.api.HttpBody.
"""

from __future__ import annotations

import datetime as dt
import hmac
import logging
from urllib.parse import parse_qsl, urlencode

from retain.type.v1 import channel_pb2
from retain.user.v1 import user_pb2
from retain_runtime.clock import Clock
from retain_runtime.errors import InvalidArgument, PermissionDenied
from retain_runtime.logs import mask_phone
from retain_runtime.phone import normalise_phone

from retain_comms import reports
from retain_comms.ledger import Ledger
from retain_comms.peers import Peers
from retain_comms.selection import call_peer
from retain_comms.store import Store

log = logging.getLogger(__name__)

# Whole-message keywords, compared after trimming and upper-casing. ACHA and
# SITISHA are Swahili for "stop".
OPT_OUT_KEYWORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "ACHA", "SITISHA"})
OPT_IN_KEYWORDS = frozenset({"START"})


def parse_form(body: bytes) -> dict[str, str]:
    """Return the first value of each field of a form-encoded body.

    NUL characters, which a PostgreSQL text column cannot hold, become U+FFFD,
    as undecodable bytes do.
    """
    fields: dict[str, str] = {}
    for name, value in parse_qsl(
        body.decode("utf-8", errors="replace"), keep_blank_values=True
    ):
        fields.setdefault(name.replace("\0", "\ufffd"), value.replace("\0", "\ufffd"))
    return fields


async def customers_of_number(
    peers: Peers, raw_phone: str
) -> list[user_pb2.PhoneNumberCustomer]:
    """Return the customers who share a number; none for an unreadable number."""
    try:
        phone = normalise_phone(raw_phone, "phoneNumber")
    except InvalidArgument:
        log.warning("A callback names an unreadable number %s", mask_phone(raw_phone))
        return []
    reply = await call_peer(
        peers.user.LookupPhoneNumber,
        user_pb2.LookupPhoneNumberRequest(phone_number=phone),
        "user.LookupPhoneNumber",
    )
    return list(reply.customers)


class Callbacks:
    """Applies delivery reports, inbound SMS and bulk opt-outs to the ledger
    and to consent."""

    def __init__(
        self, store: Store, ledger: Ledger, peers: Peers, clock: Clock, secret: str
    ) -> None:
        self.store = store
        self.ledger = ledger
        self.peers = peers
        self.clock = clock
        self._secret = secret.encode()
        self.report_writer = reports.ReportWriter(ledger, clock)
        self.unknown_status_count = 0

    def check_secret(self, supplied: str) -> None:
        """Raise PermissionDenied unless supplied equals the callback secret."""
        if not self._secret or not hmac.compare_digest(supplied.encode(), self._secret):
            log.warning("Rejected a callback with a wrong or missing secret")
            raise PermissionDenied("the callback secret is wrong or missing")

    async def delivery_report(self, body: bytes) -> None:
        """Store a delivery report and apply it to its message, if known yet."""
        form = parse_form(body)
        provider_id, status = form.get("id", ""), form.get("status", "")
        if not provider_id:
            log.warning("Ignored a delivery report without an id")
            return
        now = self.clock.now()
        masked = {**form, "phoneNumber": mask_phone(form.get("phoneNumber", ""))}
        report_id, applied = await self.report_writer.add(
            {
                "provider_message_id": provider_id,
                "status": status,
                "failure_reason": form.get("failureReason", ""),
                "body": urlencode(masked),
                "receive_time": now,
            }
        )
        if status not in reports.KNOWN_STATUSES:
            self.unknown_status_count += 1
            log.warning(
                "Delivery report %d for %s has unknown status %r (%d so far)",
                report_id,
                provider_id,
                status[:40],
                self.unknown_status_count,
            )
        if not applied:
            await self._test_message_report(report_id, form, now)

    async def _test_message_report(
        self, report_id: int, form: dict[str, str], now: dt.datetime
    ) -> None:
        """Apply a report to a test message, or leave it waiting for a send."""
        provider_id = form["id"]
        if await self.store.find_test_message(provider_id) is None:
            # The worker, or a test send, applies it once it records the send,
            # if it ever does.
            log.info(
                "Delivery report %d names unknown message %s", report_id, provider_id
            )
            return
        await reports.apply_test_report(
            self.store,
            provider_id,
            form.get("status", ""),
            form.get("failureReason", ""),
            now,
        )
        await self.ledger.mark_applied(report_id)

    async def inbound_sms(self, body: bytes) -> None:
        """Act on STOP, STOPALL, UNSUBSCRIBE, ACHA, SITISHA and START sent as the
        whole message, and keep every inbound message for a person to read."""
        form = parse_form(body)
        text = form.get("text", "")
        keyword = text.strip().upper()
        try:
            phone = normalise_phone(form.get("from", ""), "from")
        except InvalidArgument:
            log.warning(
                "Inbound SMS %s comes from an unreadable number", form.get("id")
            )
            phone = ""
        action, customer_ids = "kept", []
        if phone and keyword in OPT_OUT_KEYWORDS:
            action, customer_ids = "opt_out", await self._opt_out(phone, keyword)
        elif phone and keyword in OPT_IN_KEYWORDS:
            action, customer_ids = "opt_in", await self._opt_in(phone, keyword)
        stored = await self.store.add_inbound(
            {
                "provider_id": form.get("id") or None,
                "customer_ids": customer_ids,
                "phone_number_masked": mask_phone(phone or form.get("from", "")),
                "text": text,
                "action": action,
                "receive_time": self.clock.now(),
            }
        )
        log.info(
            "Inbound SMS %s from %s: %s%s",
            form.get("id"),
            mask_phone(phone),
            action,
            "" if stored else " (repeat)",
        )

    async def bulk_opt_out(self, body: bytes) -> None:
        """Opt a number out of SMS after it opted out of an alphanumeric sender id.

        AT posts senderId and phoneNumber. A repeat is harmless, because the
        user service records an opt-out of a number that opted out already as
        a no-op. An unreadable number is logged and dropped, since AT would
        only post it again.
        """
        form = parse_form(body)
        sender_id = form.get("senderId", "")[:40]
        try:
            phone = normalise_phone(form.get("phoneNumber", ""), "phoneNumber")
        except InvalidArgument:
            log.warning(
                "Ignored a bulk opt-out from sender id %r with an unreadable number",
                sender_id,
            )
            return
        reply = await call_peer(
            self.peers.user.RecordOptOut,
            user_pb2.RecordOptOutRequest(
                phone_number=phone,
                channel=channel_pb2.CHANNEL_SMS,
                source=user_pb2.CONSENT_SOURCE_PROVIDER_OPT_OUT,
                evidence=f"Africa's Talking bulk opt-out of sender id {sender_id}",
            ),
            "user.RecordOptOut",
        )
        log.info(
            "Bulk opt-out of %s from sender id %r: customers %s%s",
            mask_phone(phone),
            sender_id,
            list(reply.affected_customer_ids),
            " (already opted out)" if reply.already_opted_out else "",
        )

    async def _opt_out(self, phone: str, keyword: str) -> list[int]:
        channel = (
            channel_pb2.CHANNEL_UNSPECIFIED
            if keyword == "STOPALL"
            else channel_pb2.CHANNEL_SMS
        )
        reply = await call_peer(
            self.peers.user.RecordOptOut,
            user_pb2.RecordOptOutRequest(
                phone_number=phone,
                channel=channel,
                source=user_pb2.CONSENT_SOURCE_SMS_KEYWORD,
                evidence=f"SMS keyword {keyword}",
            ),
            "user.RecordOptOut",
        )
        return list(reply.affected_customer_ids)

    async def _opt_in(self, phone: str, keyword: str) -> list[int]:
        reply = await call_peer(
            self.peers.user.RecordOptIn,
            user_pb2.RecordOptInRequest(
                phone_number=phone,
                channel=channel_pb2.CHANNEL_SMS,
                source=user_pb2.CONSENT_SOURCE_SMS_KEYWORD,
                evidence=f"SMS keyword {keyword}",
            ),
            "user.RecordOptIn",
        )
        return list(reply.affected_customer_ids)
