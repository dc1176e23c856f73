"""Responses to Africa's Talking's voice callback, in AT's XML, and the
outcome of campaign calls.

AT posts the callback when a call connects (isActive=1) and once more when it
ends (isActive=0, with durationInSeconds, currencyCode, amount and
hangupCause). Other fields are sessionId, direction ("Inbound" or
"Outbound"), callerNumber (the customer's number) and destinationNumber
(Retain's AT number).

A connected campaign call reads its message's template with the customer's
first name, after consent for voice is checked once more. Any other connected
call hears a short message in the customer's language. The final callback of
an outbound call is stored as a delivery report of the call's session id:
"Success" when the call lasted more than 0 seconds, else "Failed" with the
hangup cause. It moves the SUBMITTED message to DELIVERED or FAILED with the
call's cost, now or, when the worker has not yet recorded the session id,
right after it does. The final callback gets an empty Response because the
call is over.
"""

from __future__ import annotations

import logging
from urllib.parse import urlencode
from xml.sax.saxutils import escape, quoteattr

from retain.type.v1 import channel_pb2
from retain.user.v1 import user_pb2
from retain_runtime.clock import Clock
from retain_runtime.errors import InvalidArgument, Unavailable
from retain_runtime.logs import mask_phone
from retain_runtime.money import parse_provider_cost

from retain_comms import reports, sms
from retain_comms.callbacks import customers_of_number, parse_form
from retain_comms.ledger import Ledger
from retain_comms.peers import Peers
from retain_comms.selection import call_peer, language_code
from retain_comms.store import Row

log = logging.getLogger(__name__)

XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>'
EMPTY_RESPONSE = f"{XML_DECLARATION}<Response/>"

# NOTE: AT's text-to-speech voices are English ones such as en-US-Standard-C,
# so the Swahili message is read with an English voice.
SPEAKING_VOICE = "en-US-Standard-C"

MESSAGES = {
    "en": "Hello. We have missed you, and we would love to serve you again. "
    "Thank you, and goodbye.",
    "sw": "Habari. Tumekukosa, na tungependa kukuhudumia tena. Asante, kwaheri.",
}


def say(text: str, voice: str = SPEAKING_VOICE) -> str:
    """Return AT's XML that reads text aloud and then ends the call."""
    return (
        f"{XML_DECLARATION}<Response><Say voice={quoteattr(voice)}>"
        f"{escape(text)}</Say></Response>"
    )


class VoiceResponder:
    """Builds the XML response to each voice callback and records the end of
    campaign calls."""

    def __init__(self, peers: Peers, ledger: Ledger, clock: Clock) -> None:
        self.peers = peers
        self.ledger = ledger
        self.clock = clock

    async def respond(self, body: bytes) -> str:
        form = parse_form(body)
        session_id = form.get("sessionId", "")[:80]
        if form.get("isActive") != "1":
            await self._record_end(form, session_id)
            return EMPTY_RESPONSE
        caller = form.get("callerNumber", "")
        customers = await self._customers(caller)
        message = await self._campaign_message(session_id, customers)
        if message is not None:
            return await self._campaign_response(message, session_id)
        language = language_code(customers[0].language) if customers else "en"
        log.info(
            "Responded to voice call %s (%s) with %s in %s",
            session_id,
            form.get("direction", "unknown direction"),
            mask_phone(caller),
            language,
        )
        return say(MESSAGES[language])

    async def _customers(self, raw_phone: str) -> list[user_pb2.PhoneNumberCustomer]:
        try:
            return await customers_of_number(self.peers, raw_phone)
        except Unavailable:
            # A caller on the line is better served in English than not at all.
            return []

    async def _campaign_message(
        self, session_id: str, customers: list[user_pb2.PhoneNumberCustomer]
    ) -> Row | None:
        """Return the campaign message the call places, by its session id or,
        before the worker recorded that, by the customers of the number."""
        if session_id:
            message = await self.ledger.find_by_provider_id(session_id)
            if message is not None:
                return message
        customer_ids = [customer.customer_id for customer in customers]
        return await self.ledger.latest_voice_call(customer_ids)

    async def _campaign_response(self, message: Row, session_id: str) -> str:
        """Read the message's template with the customer's first name, or end
        the call silently if the customer no longer has voice consent."""
        try:
            reply = await call_peer(
                self.peers.user.GetContacts,
                user_pb2.GetContactsRequest(
                    customer_ids=[message.customer_id],
                    channel=channel_pb2.CHANNEL_VOICE,
                    purpose=message.purpose,
                ),
                "user.GetContacts",
            )
        except Unavailable:
            log.warning("Voice call %s ends unread: no contact", session_id)
            return EMPTY_RESPONSE
        if not reply.contacts:
            log.info("Voice call %s ends unread: consent withdrawn", session_id)
            return EMPTY_RESPONSE
        try:
            text = sms.fill_slots(
                message.template, reply.contacts[0].first_name, message.language
            )
        except sms.TemplateError:
            log.exception("Voice call %s ends unread", session_id)
            return EMPTY_RESPONSE
        log.info("Voice call %s reads message %d", session_id, message.message_id)
        return say(text)

    async def _record_end(self, form: dict[str, str], session_id: str) -> None:
        """Store the final callback of an outbound call as a delivery report
        of its session id and apply it to the call's message, if recorded."""
        log.info(
            "Voice call %s ended after %s s, costing %s %s",
            session_id,
            form.get("durationInSeconds", "?"),
            form.get("currencyCode", ""),
            form.get("amount", "?"),
        )
        if not session_id or form.get("direction") != "Outbound":
            return

        status, reason = _call_status(form)
        currency, cost = _call_cost(form)
        now = self.clock.now()
        masked = {**form, "callerNumber": mask_phone(form.get("callerNumber", ""))}
        report_id = await self.ledger.add_report(
            {
                "provider_message_id": session_id,
                "status": status,
                "failure_reason": reason,
                "body": urlencode(masked),
                "receive_time": now,
                "cost_micros": cost,
                "cost_currency": currency,
            }
        )

        move = reports.move_of(report_id, session_id, status, reason, cost, currency)
        if session_id not in await self.ledger.apply_reports([move], now):
            # The worker applies it once it records the call's session id.
            log.info("Voice report %d waits for call %s", report_id, session_id)


def _call_status(form: dict[str, str]) -> tuple[str, str]:
    """Return the report status of a finished call and its failure reason."""
    try:
        duration = int(form.get("durationInSeconds", "0") or "0")
    except ValueError:
        duration = 0
    if duration > 0:
        return "Success", ""
    reason = form.get("hangupCause") or form.get("callSessionState") or ""
    return "Failed", reason or "not answered"


def _call_cost(form: dict[str, str]) -> tuple[str, int]:
    """Return the currency and cost in micros that a final callback states."""
    text = f"{form.get('currencyCode', '')} {form.get('amount', '0')}"
    try:
        return parse_provider_cost(text)
    except InvalidArgument:
        log.warning("Voice call %s has an unreadable cost", form.get("sessionId"))
        return "", 0
