"""The provider requests of a claimed batch, and the ledger outcomes of their
verdicts.

Recipients of the same text share one SMS request, and voice recipients share
one call request. AT's reply gives each recipient's status by number, so no
request names a number twice: customers who share a phone number go into
separate requests.
"""

from __future__ import annotations

import collections
import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from retain.type.v1 import channel_pb2
from retain.user.v1 import user_pb2

from retain_comms import sms
from retain_comms.africastalking import CallResult, Outcome, SendResult
from retain_comms.batches import MessageOutcome
from retain_comms.states import MessageState
from retain_comms.store import Row

# Recipients per provider request, below the batch size limit of 1000.
MAX_RECIPIENTS = 1000


class Kind(enum.StrEnum):
    SMS = "sms"
    VOICE = "voice"


@dataclass
class ProviderRequest:
    """One request to AT: an SMS text to numbers, or calls to numbers."""

    kind: Kind
    text: str
    # messages maps each number of the request to its ledger row.
    messages: dict[str, Row] = field(default_factory=dict)


@dataclass
class Plan:
    """The requests of a batch and the outcomes known before any request."""

    requests: list[ProviderRequest] = field(default_factory=list)
    outcomes: list[MessageOutcome] = field(default_factory=list)


def plan_requests(
    rows: Sequence[Row], contacts: dict[int, user_pb2.Contact], live_account: bool
) -> Plan:
    """Group claimed messages into requests; finish those that cannot be sent.

    contacts contains the customers who still have consent for their message's
    channel and purpose, by customer id.
    """
    plan = Plan()
    groups: dict[tuple[Kind, str], list[tuple[str, Row]]] = collections.defaultdict(
        list
    )
    for row in rows:
        contact = contacts.get(row.customer_id)
        if contact is None:
            plan.outcomes.append(_suppressed(row, "no consent"))
            continue
        if contact.fictitious and live_account:
            reason = "fictitious number on a live account"
            plan.outcomes.append(_suppressed(row, reason))
            continue
        if row.channel == channel_pb2.CHANNEL_VOICE:
            groups[(Kind.VOICE, "")].append((contact.phone_number, row))
            continue
        try:
            text = sms.fill_slots(row.template, contact.first_name, row.language)
        except sms.TemplateError as error:
            plan.outcomes.append(
                MessageOutcome(
                    row.message_id,
                    MessageState.FAILED,
                    reason=str(error),
                    attempt_count=0,
                )
            )
            continue
        groups[(Kind.SMS, text)].append((contact.phone_number, row))
    for (kind, text), members in groups.items():
        plan.requests.extend(_split(kind, text, members))
    return plan


def _split(
    kind: Kind, text: str, members: Iterable[tuple[str, Row]]
) -> list[ProviderRequest]:
    """Split recipients into requests of distinct numbers, at most
    MAX_RECIPIENTS each."""
    requests: list[ProviderRequest] = []
    for number, row in members:
        target = next(
            (
                r
                for r in requests
                if number not in r.messages and len(r.messages) < MAX_RECIPIENTS
            ),
            None,
        )
        if target is None:
            target = ProviderRequest(kind, text)
            requests.append(target)
        target.messages[number] = row
    return requests


def _suppressed(row: Row, reason: str) -> MessageOutcome:
    return MessageOutcome(
        row.message_id, MessageState.SUPPRESSED, reason=reason, attempt_count=0
    )


def sms_outcome(message_id: int, result: SendResult) -> MessageOutcome | None:
    """Return the ledger outcome of an SMS verdict; None for insufficient
    balance, which puts the message back to PENDING."""
    if result.outcome is Outcome.SUBMITTED:
        return MessageOutcome(
            message_id,
            MessageState.SUBMITTED,
            # The ledger's provider ids are unique, so a missing id is NULL.
            provider_message_id=result.provider_message_id or None,
            provider_status=result.provider_status,
            cost_micros=result.cost_micros,
            cost_currency=result.currency,
        )
    if result.outcome is Outcome.INSUFFICIENT_BALANCE:
        return None
    if result.outcome is Outcome.UNKNOWN:
        return MessageOutcome(
            message_id, MessageState.DELIVERY_UNKNOWN, reason=result.reason
        )
    return MessageOutcome(
        message_id,
        MessageState.FAILED,
        reason=result.reason,
        provider_status=result.provider_status,
    )


def call_outcome(message_id: int, result: CallResult) -> MessageOutcome:
    """Return the ledger outcome of a call verdict. A queued call is SUBMITTED
    under its session id until the voice callback of its end arrives."""
    if result.outcome is Outcome.SUBMITTED:
        return MessageOutcome(
            message_id,
            MessageState.SUBMITTED,
            provider_message_id=result.session_id or None,
            provider_status=result.provider_status,
        )
    if result.outcome is Outcome.UNKNOWN:
        return MessageOutcome(
            message_id, MessageState.DELIVERY_UNKNOWN, reason=result.reason
        )
    return MessageOutcome(
        message_id,
        MessageState.FAILED,
        reason=result.reason,
        provider_status=result.provider_status,
    )
