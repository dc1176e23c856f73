"""Message previews and test messages.

A preview is a text a launch would send now. It runs the same selection as
DryRunCampaign, whose composition requests one template per language and
vertical from inference, and fills each template with a sample first name. A
language that no recipient reads gets a template too, composed for an empty
group of that language, so an admin can read every language before launch.
A launched campaign previews the templates its ledger holds.

A test message sends one preview to the calling admin's own phone through the
same Africa's Talking client as the worker. It is kept in test_messages,
apart from the ledger, so no campaign count, spend or frequency cap includes
it. As in the worker, a fictitious number never reaches a live AT account.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

import grpc
from retain.comms.v1 import comms_pb2
from retain.user.v1 import user_pb2
from retain_runtime.callers import current_caller
from retain_runtime.clock import Clock
from retain_runtime.errors import FailedPrecondition, Unavailable
from retain_runtime.logs import mask_phone

from retain_comms import reports, sms
from retain_comms.africastalking import AfricasTalkingClient, Outcome, ProviderError
from retain_comms.callbacks import customers_of_number
from retain_comms.campaigns import Campaigns, spec_of
from retain_comms.ledger import Ledger
from retain_comms.peers import CALL_TIMEOUT, Peers
from retain_comms.selection import Recipient, Selection, Selector
from retain_comms.states import MessageState
from retain_comms.store import Row, Store

log = logging.getLogger(__name__)

SAMPLE_FIRST_NAME = "Amina"
LANGUAGES = ("en", "sw")

# Provider outcomes other than these leave a test message FAILED.
_OUTCOME_STATES = {
    Outcome.SUBMITTED: MessageState.SUBMITTED,
    Outcome.UNKNOWN: MessageState.DELIVERY_UNKNOWN,
}


@dataclass(frozen=True)
class Preview:
    """One template of a campaign, filled with the sample first name."""

    segment_key: str
    language: str
    text: str
    encoding: int
    segments: int
    unit_cost_micros: int


class Previews:
    """Builds previews and sends test messages to admins."""

    def __init__(
        self,
        campaigns: Campaigns,
        selector: Selector,
        store: Store,
        ledger: Ledger,
        peers: Peers,
        provider: AfricasTalkingClient,
        clock: Clock,
        live_account: bool,
    ) -> None:
        self.campaigns = campaigns
        self.selector = selector
        self.store = store
        self.ledger = ledger
        self.peers = peers
        self.provider = provider
        self.clock = clock
        self.live_account = live_account

    async def preview(self, campaign_id: int) -> list[Preview]:
        """Return one preview per template, ordered by segment key."""
        row = await self.campaigns.get(campaign_id)
        if row.launch_time is not None:
            launched = await self.ledger.templates_of(campaign_id)
            return [self._preview("", lang, text) for lang, text in launched]
        spec = spec_of(row)
        selection = await self.selector.select(campaign_id, spec, self.clock.now())
        templates = {key: t.text for key, t in selection.templates.items()}
        templates.update(await self._missing_languages(selection, spec))
        return [
            self._preview(key, _language_of(key), text)
            for key, text in sorted(templates.items())
        ]

    async def _missing_languages(
        self, selection: Selection, spec: comms_pb2.CampaignSpec
    ) -> dict[str, str]:
        """Compose templates for the languages no recipient reads."""
        present = {_language_of(key) for key in selection.templates}
        vertical = (
            selection.treated[0].vertical
            if selection.treated
            else user_pb2.VERTICAL_TRANSPORT
        )
        stand_ins = [
            Recipient(0, 0.0, language, vertical, "")
            for language in LANGUAGES
            if language not in present
        ]
        if not stand_ins:
            return {}
        composed = await self.selector.compose(stand_ins, spec)
        return {key: template.text for key, template in composed.items()}

    def _preview(self, segment_key: str, language: str, template: str) -> Preview:
        encoding, segments = sms.template_parts(template)
        try:
            text = sms.fill_slots(template, SAMPLE_FIRST_NAME, language)
        except sms.TemplateError as error:
            raise FailedPrecondition(
                f"the {language} text cannot be sent: {error}; the launch would "
                "fail these messages, so change the template writer"
            ) from None
        return Preview(
            segment_key,
            language,
            text,
            encoding,
            segments,
            segments * self.selector.unit_price_micros,
        )

    async def send_test(self, campaign_id: int, language: str) -> Row:
        """Send the campaign's preview in a language to the calling admin."""
        subject = _admin_subject()
        previews = [
            p for p in await self.preview(campaign_id) if p.language == language
        ]
        if not previews:
            raise FailedPrecondition(
                f"campaign {campaign_id} has no {language} text; it was launched "
                "without recipients who read it, so pick another language"
            )
        phone = await self._admin_phone(subject)
        values = _test_values(campaign_id, subject, phone, previews[0], self.clock)
        if self.live_account and await self._fictitious(phone):
            values.update(
                state=MessageState.SUPPRESSED,
                reason="fictitious number on a live account",
            )
        else:
            values.update(await self._send(phone, previews[0].text))
        row = await self.store.add_test_message(values)
        if row.state == MessageState.SUBMITTED:
            await reports.apply_waiting_test_reports(
                self.store, self.ledger, row.provider_message_id, self.clock.now()
            )
        log.info(
            "Test message %d of campaign %d to %s is %s",
            row.test_message_id,
            campaign_id,
            mask_phone(phone),
            row.state,
        )
        return row

    async def _admin_phone(self, subject: str) -> str:
        """Return the admin's phone number from the user service."""
        try:
            reply = await self.peers.user.GetAdminContact(
                user_pb2.GetAdminContactRequest(email=subject), timeout=CALL_TIMEOUT
            )
        except grpc.aio.AioRpcError as error:
            code = error.code()
            if code in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                raise FailedPrecondition(
                    f"no admin account has the caller's subject {subject!r}; test "
                    "messages go to a signed-in admin's own phone"
                ) from None
            raise Unavailable(
                f"user.GetAdminContact failed with {code.name}: {error.details()}"
            ) from None
        if not reply.phone_number:
            raise FailedPrecondition(
                f"admin {subject} has no phone number; add one to the account to "
                "receive test messages"
            )
        return reply.phone_number

    async def _fictitious(self, phone: str) -> bool:
        """Return whether a customer marked fictitious has this number."""
        customers = await customers_of_number(self.peers, phone)
        return any(customer.fictitious for customer in customers)

    async def _send(self, phone: str, text: str) -> dict[str, Any]:
        """Send one test SMS and return the columns its outcome sets."""
        try:
            result = await self.provider.send(phone, text)
        except ProviderError as error:
            return {"state": MessageState.FAILED, "reason": str(error)[:200]}
        return {
            "state": _OUTCOME_STATES.get(result.outcome, MessageState.FAILED),
            "provider_message_id": result.provider_message_id or None,
            "provider_status": result.provider_status,
            "cost_micros": result.cost_micros,
            "cost_currency": result.currency,
            "reason": result.reason,
        }


def _admin_subject() -> str:
    """Return the signed-in admin's email, which Envoy forwards as the subject."""
    caller = current_caller.get()
    if caller is None or not caller.subject:
        name = caller.name if caller is not None else "an unknown caller"
        raise FailedPrecondition(
            f"a test message goes to the signed-in admin's own phone, but the "
            f"call from {name} carries no admin subject; send it from the "
            "dashboard while signed in"
        )
    return caller.subject


def _language_of(segment_key: str) -> str:
    """Return the language of a segment key such as "sw-transport"."""
    return segment_key.partition("-")[0]


def _test_values(
    campaign_id: int, subject: str, phone: str, preview: Preview, clock: Clock
) -> dict[str, Any]:
    now: dt.datetime = clock.now()
    return {
        "campaign_id": campaign_id,
        "admin_email": subject,
        "phone_number_masked": mask_phone(phone),
        "language": preview.language,
        "segment_key": preview.segment_key,
        "text": preview.text,
        "encoding": preview.encoding,
        "segments": preview.segments,
        "estimated_cost_micros": preview.unit_cost_micros,
        "create_time": now,
        "update_time": now,
    }
