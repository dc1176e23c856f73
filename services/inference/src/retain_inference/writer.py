"""Message templates per segment and language: the entry point of ComposeMessages.

`compose` returns one `Template` per segment, written by `GroqWriter` when a Groq
API key is set and by `TemplateWriter` otherwise or when Groq fails.
"""

import asyncio
import logging
from collections.abc import Sequence

from retain_runtime.errors import InvalidArgument

from retain_inference.groq_writer import (
    DEFAULT_GROQ_BASE_URL,
    DEFAULT_GROQ_MODELS,
    GroqWriter,
    InvalidReply,
    Sleep,
    WriterSettings,
    build_messages,
    check_reply,
)
from retain_inference.template_writer import (
    LANGUAGES,
    MAX_FIRST_NAME_LENGTH,
    SLOT,
    TEMPLATE_WRITER,
    MessageBrief,
    SegmentLike,
    Template,
    TemplateWriter,
    measure,
)

__all__ = [
    "DEFAULT_GROQ_BASE_URL",
    "DEFAULT_GROQ_MODELS",
    "LANGUAGES",
    "MAX_FIRST_NAME_LENGTH",
    "SLOT",
    "TEMPLATE_WRITER",
    "GroqWriter",
    "InvalidReply",
    "MessageBrief",
    "SegmentLike",
    "Template",
    "TemplateWriter",
    "WriterSettings",
    "build_messages",
    "check_reply",
    "compose",
    "create_writer",
    "measure",
]

logger = logging.getLogger(__name__)


def _check_language(segment: SegmentLike, index: int) -> None:
    if segment.language not in LANGUAGES:
        raise InvalidArgument(
            f"segments[{index}].language",
            f'"{segment.language}" is not one of {", ".join(LANGUAGES)}',
        )


def create_writer(
    settings: WriterSettings, *, sleep: Sleep = asyncio.sleep
) -> TemplateWriter | GroqWriter:
    """Return a GroqWriter when an API key is set, else a TemplateWriter."""
    if settings.api_key:
        return GroqWriter(settings, sleep=sleep)
    return TemplateWriter()


async def compose(
    segments: Sequence[SegmentLike],
    channel: int,
    purpose: int,
    offer: str,
    max_segments: int,
    brand: str,
    settings: WriterSettings,
    *,
    sleep: Sleep = asyncio.sleep,
) -> list[Template]:
    """Write one template per segment, in the order of `segments`.

    `channel` and `purpose` are `retain.type.v1` enum values, and a
    `max_segments` of 0 means 1. Raises InvalidArgument for a field the writers
    cannot use.
    """
    brief = MessageBrief.create(channel, purpose, offer, max_segments, brand)
    for index, segment in enumerate(segments):
        _check_language(segment, index)
    writer = create_writer(settings, sleep=sleep)
    keys = [segment.segment_key for segment in segments]
    logger.info(
        "Composing %d templates for segments %s with %s",
        len(keys),
        keys,
        ", ".join(settings.models) if settings.api_key else TEMPLATE_WRITER,
    )
    try:
        templates = await writer.write_all(segments, brief)
    finally:
        await writer.aclose()
    logger.info(
        "Composed templates: %s",
        ", ".join(f"{t.segment_key}={t.writer}" for t in templates),
    )
    return templates
