"""Deterministic message templates from fixed English and Swahili phrases.

A template is the text for one segment of customers. It may hold the
`{first_name}` slot, which the caller fills per customer with at most
`MAX_FIRST_NAME_LENGTH` characters, and it fits the SMS part budget with a name of
that length. `TemplateWriter` writes every text when no Groq key is set, and any
text that `GroqWriter` cannot write.
"""

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from retain.type.v1 import channel_pb2
from retain_runtime import sms
from retain_runtime.errors import InvalidArgument

logger = logging.getLogger(__name__)

SLOT = "{first_name}"
MAX_FIRST_NAME_LENGTH = 20
# Counting with this filler gives the parts of the longest allowed GSM-7 name.
_LONGEST_NAME = "W" * MAX_FIRST_NAME_LENGTH
LANGUAGES = ("en", "sw")
TEMPLATE_WRITER = "template"


class SegmentLike(Protocol):
    """The fields of `retain.inference.v1.Segment` that the writers read."""

    @property
    def segment_key(self) -> str: ...
    @property
    def language(self) -> str: ...
    @property
    def reason_codes(self) -> Sequence[str]: ...


@dataclass(frozen=True)
class Template:
    """One text for a segment, with its writer and its SMS shape.

    `writer` is "template" or the Groq model id. `encoding` is `sms.GSM7` or
    `sms.UCS2`, and `segments` counts parts with a 20-character first name.
    """

    segment_key: str
    text: str
    writer: str
    encoding: str
    segments: int


@dataclass(frozen=True)
class MessageBrief:
    """The fields that every template of one compose call shares, normalised."""

    channel: int  # retain.type.v1.Channel
    marketing: bool
    offer: str  # empty for service messages, which make no offer
    max_segments: int
    brand: str

    @property
    def needs_opt_out(self) -> bool:
        """Whether texts end with the STOP hint: marketing sent as SMS."""
        sms_channels = (channel_pb2.CHANNEL_SMS, channel_pb2.CHANNEL_UNSPECIFIED)
        return self.marketing and self.channel in sms_channels

    @classmethod
    def create(
        cls, channel: int, purpose: int, offer: str, max_segments: int, brand: str
    ) -> "MessageBrief":
        """Check the request fields that the writers depend on.

        The request validators should reject these cases first, and this check
        keeps the writers safe when they are called another way.
        """
        if purpose not in (channel_pb2.PURPOSE_MARKETING, channel_pb2.PURPOSE_SERVICE):
            raise InvalidArgument(
                "purpose", "must be PURPOSE_MARKETING or PURPOSE_SERVICE"
            )
        if max_segments < 0:
            raise InvalidArgument("max_segments", f"{max_segments} is below 0")
        brand = sms.normalise(brand.strip())
        offer = sms.normalise(offer.strip()).rstrip(".!")
        for name, value in (("brand_name", brand), ("offer", offer)):
            if "{" in value or "}" in value:
                raise InvalidArgument(name, f'"{value}" must not contain braces')
        if not brand:
            raise InvalidArgument("brand_name", "is empty; set the sender's brand")
        marketing = purpose == channel_pb2.PURPOSE_MARKETING
        if offer and not marketing:
            logger.info("Ignoring the offer because service messages make no offer")
        return cls(
            channel, marketing, offer if marketing else "", max_segments or 1, brand
        )


def measure(text: str) -> sms.SmsShape:
    """Return the SMS shape of `text` with the slot filled by the longest name."""
    return sms.shape(sms.normalise(text.replace(SLOT, _LONGEST_NAME)))


def fits(text: str, max_segments: int) -> bool:
    return measure(text).segments <= max_segments


def to_template(segment_key: str, text: str, writer: str) -> Template:
    shape = measure(text)
    return Template(segment_key, text, writer, shape.encoding, shape.segments)


# Fixed phrases


@dataclass(frozen=True)
class _Phrases:
    greeting: str
    reasons: Mapping[str, str]
    default_reason: str
    offer: str
    marketing_closing: str
    service_closing: str
    opt_out: str
    opt_out_keyword: str


PHRASES: Mapping[str, _Phrases] = {
    "en": _Phrases(
        greeting=f"Hi {SLOT}!",
        reasons={
            "NO_ACTIVITY_SINCE": "We have not seen you for a while.",
            "SPEND_DOWN": "We noticed you have been using our service less lately.",
            "FEW_PURCHASES": "We have seen less of you lately.",
            "SINGLE_PURCHASE": "Thank you for trying us.",
            "NO_PURCHASES": "Thank you for signing up.",
        },
        default_reason="We miss you.",
        offer="Special offer: {offer}.",
        marketing_closing="We would love to serve you soon.",
        service_closing="We are here if you need any help.",
        opt_out="Reply STOP to opt out.",
        opt_out_keyword="STOP",
    ),
    "sw": _Phrases(
        greeting=f"Habari {SLOT}!",
        reasons={
            "NO_ACTIVITY_SINCE": "Hatujakuona kwa muda.",
            "SPEND_DOWN": "Tumeona unatumia huduma zetu kidogo siku hizi.",
            "FEW_PURCHASES": "Hatukuoni mara nyingi siku hizi.",
            "SINGLE_PURCHASE": "Asante kwa kutujaribu.",
            "NO_PURCHASES": "Asante kwa kujisajili.",
        },
        default_reason="Tumekukumbuka.",
        offer="Ofa maalum: {offer}.",
        marketing_closing="Tungependa kukuhudumia hivi karibuni.",
        service_closing="Tuko hapa ukihitaji msaada.",
        opt_out="Jibu ACHA kusitisha.",
        opt_out_keyword="ACHA",
    ),
}


def _main_reason(reason_codes: Sequence[str]) -> str | None:
    """Return the first reason code that has a phrase, or None."""
    known = PHRASES["en"].reasons
    return next((code for code in reason_codes if code in known), None)


class TemplateWriter:
    """Deterministic texts from fixed phrases, shortened to fit the part budget.

    A text is the greeting, the reason, the offer, a closing, the brand and, for
    marketing by SMS, the opt-out hint. When it is too long the writer drops the
    reason, then the offer, then the closing.
    """

    def write(self, segment: SegmentLike, brief: MessageBrief) -> Template:
        phrases = PHRASES[segment.language]
        code = _main_reason(segment.reason_codes)
        reason = phrases.reasons[code] if code else phrases.default_reason
        offer = phrases.offer.format(offer=brief.offer) if brief.offer else ""
        closing = (
            phrases.marketing_closing if brief.marketing else phrases.service_closing
        )
        # Each variant drops one more part; the first that fits wins.
        variants = [
            (reason, offer, closing, ""),
            ("", offer, closing, "the reason"),
            ("", "", closing, "the reason and the offer"),
            ("", "", "", "the reason, the offer and the closing"),
        ]
        for reason_part, offer_part, closing_part, dropped in variants:
            parts = [phrases.greeting, reason_part, offer_part, closing_part]
            parts.append(f"- {brief.brand.rstrip('.')}.")
            if brief.needs_opt_out:
                parts.append(phrases.opt_out)
            text = " ".join(part for part in parts if part)
            if fits(text, brief.max_segments):
                if dropped:
                    logger.warning(
                        "Dropped %s from the template of segment %s to fit %d SMS part(s)",
                        dropped,
                        segment.segment_key,
                        brief.max_segments,
                    )
                return to_template(segment.segment_key, text, TEMPLATE_WRITER)
        raise InvalidArgument(
            "brand_name",
            f'"{brief.brand}" leaves no room for a message in {brief.max_segments} '
            "SMS part(s); use a shorter brand or raise max_segments",
        )

    async def write_all(
        self, segments: Sequence[SegmentLike], brief: MessageBrief
    ) -> list[Template]:
        return [self.write(segment, brief) for segment in segments]

    async def aclose(self) -> None:
        """Release nothing: the template writer holds no connections."""
