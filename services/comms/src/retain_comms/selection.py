"""Recipient selection: who a campaign messages, who it holds out, and the
text and cost of each message. It writes nothing, so launch and dry run
share it.

The steps:

1. Read the at-risk customers of a scoring run, page by page.
2. Drop those without consent and those over the frequency cap.
3. Draw the control group with a generator seeded by the campaign id.
4. Compose one template per language and vertical.
5. Plan one message per treated customer, highest risk first, until the
   budget or max_customers runs out.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
from google.protobuf import text_format
from retain.comms.v1 import comms_pb2
from retain.inference.v1 import inference_pb2
from retain.type.v1 import channel_pb2
from retain.user.v1 import user_pb2
from retain_runtime.errors import Unavailable

from retain_comms import sms, window
from retain_comms.ledger import Ledger
from retain_comms.peers import CALL_TIMEOUT, Peers
from retain_comms.states import MessageState

log = logging.getLogger(__name__)

# Customer ids per CheckConsents request, the most the user service takes.
CONSENT_BATCH = 10_000
# Scores per ListScores page.
SCORES_PAGE = 10_000

Reply = TypeVar("Reply")


@dataclass(frozen=True)
class Recipient:
    customer_id: int
    churn_probability: float
    language: str
    vertical: int
    reason_code: str


@dataclass(frozen=True)
class PlannedMessage:
    customer_id: int
    state: MessageState
    language: str
    template: str
    encoding: int
    segments: int
    estimated_cost_micros: int
    reason: str = ""
    not_before_time: dt.datetime | None = None


@dataclass
class Selection:
    """The outcome of selection for one campaign."""

    scoring_run_id: int = 0
    probabilities: dict[int, float] = field(default_factory=dict)
    no_consent: list[int] = field(default_factory=list)
    capped: list[int] = field(default_factory=list)
    treated: list[Recipient] = field(default_factory=list)
    control: list[int] = field(default_factory=list)
    # templates are the texts inference wrote, by segment key.
    templates: dict[str, inference_pb2.MessageTemplate] = field(default_factory=dict)
    messages: list[PlannedMessage] = field(default_factory=list)

    def counts(self) -> comms_pb2.CampaignCounts:
        suppressed = sum(1 for m in self.messages if m.state == MessageState.SUPPRESSED)
        return comms_pb2.CampaignCounts(
            at_risk_count=len(self.probabilities),
            no_consent_count=len(self.no_consent),
            capped_count=len(self.capped),
            eligible_count=len(self.treated) + len(self.control),
            treated_count=len(self.messages) - suppressed,
            held_out_count=len(self.control),
            suppressed_count=suppressed,
        )

    def estimated_cost_micros(self) -> int:
        return sum(
            m.estimated_cost_micros
            for m in self.messages
            if m.state != MessageState.SUPPRESSED
        )


async def call_peer(
    method: Callable[..., Awaitable[Reply]], request: Any, what: str
) -> Reply:
    """Call a peer RPC, turning its failure into Unavailable."""
    try:
        return await method(request, timeout=CALL_TIMEOUT)
    except grpc.aio.AioRpcError as error:
        log.warning("%s failed with %s: %s", what, error.code().name, error.details())
        raise Unavailable(
            f"{what} failed with {error.code().name}: {error.details()}"
        ) from None


class Selector:
    """Selects the recipients of a campaign from scores, consent and the ledger."""

    def __init__(
        self,
        peers: Peers,
        ledger: Ledger,
        unit_price_micros: int,
        voice_call_price_micros: int = 0,
    ) -> None:
        self.peers = peers
        self.ledger = ledger
        self.unit_price_micros = unit_price_micros
        self.voice_call_price_micros = voice_call_price_micros

    async def select(
        self, campaign_id: int, spec: comms_pb2.CampaignSpec, now: dt.datetime
    ) -> Selection:
        selection = Selection()
        reasons = await self._read_scores(spec, selection)
        consented = await self._consented(list(selection.probabilities), spec)
        selection.no_consent = [
            c for c in selection.probabilities if c not in consented
        ]
        allowed = await self._under_cap(list(consented), spec, now, selection)
        treated_ids, selection.control = draw_holdout(
            allowed, spec.holdout_share, campaign_id
        )
        selection.treated = sorted(
            (
                _recipient(consented[c], selection.probabilities[c], reasons[c])
                for c in treated_ids
            ),
            key=lambda r: (-r.churn_probability, r.customer_id),
        )
        selection.templates = await self.compose(selection.treated, spec)
        selection.messages = self._plan(
            selection.treated, selection.templates, spec, now
        )
        log.info(
            "Selected for campaign %d from run %d: %s",
            campaign_id,
            selection.scoring_run_id,
            text_format.MessageToString(selection.counts(), as_one_line=True),
        )
        return selection

    async def _read_scores(
        self, spec: comms_pb2.CampaignSpec, selection: Selection
    ) -> dict[int, str]:
        """Fill selection.probabilities and return each customer's top reason."""
        reasons: dict[int, str] = {}
        token = ""
        while True:
            reply = await call_peer(
                self.peers.inference.ListScores,
                inference_pb2.ListScoresRequest(
                    scoring_run_id=spec.scoring_run_id,
                    min_churn_probability=spec.min_churn_probability,
                    page_size=SCORES_PAGE,
                    page_token=token,
                ),
                "inference.ListScores",
            )
            selection.scoring_run_id = reply.scoring_run_id
            for score in reply.scores:
                selection.probabilities[score.customer_id] = score.churn_probability
                reasons[score.customer_id] = (
                    score.reasons[0].code if score.reasons else ""
                )
            token = reply.next_page_token
            if not token:
                return reasons

    async def _consented(
        self, customer_ids: list[int], spec: comms_pb2.CampaignSpec
    ) -> dict[int, user_pb2.ConsentedCustomer]:
        """Return the customers who hold consent for the channel and purpose."""
        consented: dict[int, user_pb2.ConsentedCustomer] = {}
        for start in range(0, len(customer_ids), CONSENT_BATCH):
            reply = await call_peer(
                self.peers.user.CheckConsents,
                user_pb2.CheckConsentsRequest(
                    customer_ids=customer_ids[start : start + CONSENT_BATCH],
                    channel=spec.channel,
                    purpose=spec.purpose,
                ),
                "user.CheckConsents",
            )
            for customer in reply.customers:
                consented[customer.customer_id] = customer
            # NOTE: a user service that fills only granted_customer_ids gives
            # no language, so those customers get the English template.
            for customer_id in reply.granted_customer_ids:
                consented.setdefault(
                    customer_id, user_pb2.ConsentedCustomer(customer_id=customer_id)
                )
        return consented

    async def _under_cap(
        self,
        customer_ids: list[int],
        spec: comms_pb2.CampaignSpec,
        now: dt.datetime,
        selection: Selection,
    ) -> list[int]:
        """Return the customers under the frequency cap; record the others."""
        cap = spec.frequency_cap
        if spec.purpose != channel_pb2.PURPOSE_MARKETING or cap.max_messages == 0:
            return customer_ids
        since = now - dt.timedelta(days=cap.period_days)
        counts: dict[int, int] = {}
        for start in range(0, len(customer_ids), CONSENT_BATCH):
            batch = customer_ids[start : start + CONSENT_BATCH]
            counts.update(await self.ledger.recent_marketing_counts(batch, since))
        selection.capped = [
            c for c in customer_ids if counts.get(c, 0) >= cap.max_messages
        ]
        capped = set(selection.capped)
        return [c for c in customer_ids if c not in capped]

    async def compose(
        self, treated: Sequence[Recipient], spec: comms_pb2.CampaignSpec
    ) -> dict[str, inference_pb2.MessageTemplate]:
        """Ask inference for one template per language and vertical, keyed by
        segment key."""
        groups: dict[str, list[Recipient]] = collections.defaultdict(list)
        for recipient in treated:
            groups[segment_key(recipient)].append(recipient)
        if not groups:
            return {}
        segments = [
            _segment(key, members, spec) for key, members in sorted(groups.items())
        ]
        reply = await call_peer(
            self.peers.inference.ComposeMessages,
            inference_pb2.ComposeMessagesRequest(
                segments=segments,
                channel=spec.channel,
                purpose=spec.purpose,
                offer=spec.offer,
                max_segments=spec.max_segments,
                brand_name=spec.brand_name,
            ),
            "inference.ComposeMessages",
        )
        templates = {t.segment_key: t for t in reply.templates}
        missing = sorted(set(groups) - set(templates))
        if missing:
            raise Unavailable(
                f"inference.ComposeMessages wrote no template for {missing}"
            )
        return templates

    def _plan(
        self,
        treated: Sequence[Recipient],
        templates: dict[str, inference_pb2.MessageTemplate],
        spec: comms_pb2.CampaignSpec,
        now: dt.datetime,
    ) -> list[PlannedMessage]:
        """Plan one message per treated customer, highest risk first; once the
        budget or max_customers is reached, every later one is suppressed."""
        state, not_before = _initial_state(spec.send_window, now)
        planned: list[PlannedMessage] = []
        reserved = 0
        stop_reason = ""
        for recipient in treated:
            template = templates[segment_key(recipient)].text
            message = self._priced(recipient, template, spec.channel)
            if not stop_reason:
                cost = reserved + message.estimated_cost_micros
                stop_reason = _stop_reason(spec, len(planned), cost)
            if stop_reason:
                message = dataclasses.replace(message, reason=stop_reason)
            else:
                message = dataclasses.replace(
                    message, state=state, not_before_time=not_before
                )
                reserved += message.estimated_cost_micros
            planned.append(message)
        return planned

    def _priced(
        self, recipient: Recipient, template: str, channel: int
    ) -> PlannedMessage:
        """Return a SUPPRESSED message with the template's parts and cost: its
        SMS parts at the unit price, or one voice call."""
        encoding, segments = sms.template_parts(template)
        cost = segments * self.unit_price_micros
        if channel == channel_pb2.CHANNEL_VOICE:
            cost = self.voice_call_price_micros
        return PlannedMessage(
            customer_id=recipient.customer_id,
            state=MessageState.SUPPRESSED,
            language=recipient.language,
            template=template,
            encoding=encoding,
            segments=segments,
            estimated_cost_micros=cost,
        )


def _initial_state(
    send_window: comms_pb2.SendWindow, now: dt.datetime
) -> tuple[MessageState, dt.datetime | None]:
    """Return PENDING inside the send window, else DEFERRED to its opening."""
    start, end = send_window.start_minute, send_window.end_minute
    if window.is_open(now, start, end):
        return MessageState.PENDING, None
    return MessageState.DEFERRED, window.next_opening(now, start, end)


def _stop_reason(
    spec: comms_pb2.CampaignSpec, planned_count: int, reserved_micros: int
) -> str:
    """Return why no more messages may be planned, or "" while they may."""
    if spec.max_customers and planned_count >= spec.max_customers:
        return "max_customers"
    if reserved_micros > spec.budget.amount_micros:
        return "budget"
    return ""


def draw_holdout(
    customer_ids: Sequence[int], share: float, seed: int
) -> tuple[list[int], list[int]]:
    """Split customers into (treated, control) with round(share * n) in control.

    The draw depends only on the set of ids, the share and the seed, so the
    same inputs always give the same groups.
    """
    ordered = sorted(customer_ids)
    random.Random(seed).shuffle(ordered)
    control_size = round(share * len(ordered))
    return sorted(ordered[control_size:]), sorted(ordered[:control_size])


def segment_key(recipient: Recipient) -> str:
    vertical = user_pb2.Vertical.Name(recipient.vertical).removeprefix("VERTICAL_")
    return f"{recipient.language}-{vertical.lower()}"


def language_code(language: int) -> str:
    """Return "sw" for LANGUAGE_SW and "en" for every other value."""
    return "sw" if language == user_pb2.LANGUAGE_SW else "en"


def _recipient(
    customer: user_pb2.ConsentedCustomer, probability: float, reason_code: str
) -> Recipient:
    language = language_code(customer.language)
    return Recipient(
        customer.customer_id, probability, language, customer.vertical, reason_code
    )


def _segment(
    key: str, members: list[Recipient], spec: comms_pb2.CampaignSpec
) -> inference_pb2.Segment:
    segment = inference_pb2.Segment(segment_key=key, language=members[0].language)
    # Health data never shapes a marketing text, so health customers' reasons
    # stay out of it.
    health_marketing = (
        members[0].vertical == user_pb2.VERTICAL_HEALTH
        and spec.purpose == channel_pb2.PURPOSE_MARKETING
    )
    codes = collections.Counter(m.reason_code for m in members if m.reason_code)
    if codes and not health_marketing:
        segment.reason_codes.append(codes.most_common(1)[0][0])
    return segment
