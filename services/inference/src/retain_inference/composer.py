"""ComposeMessages: adapts the message writer to the RPC's messages."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from retain.inference.v1 import inference_pb2 as pb

from retain_inference import writer
from retain_runtime import sms

Composer = Callable[[pb.ComposeMessagesRequest], Awaitable[list[pb.MessageTemplate]]]

_ENCODINGS = {sms.GSM7: pb.ENCODING_GSM_7, sms.UCS2: pb.ENCODING_UCS_2}


def composer_from_env(environ: Mapping[str, str] | None = None) -> Composer:
    """Return the composer for this process, with Groq settings read once."""
    settings = writer.WriterSettings.from_env(environ)

    async def compose(request: pb.ComposeMessagesRequest) -> list[pb.MessageTemplate]:
        templates = await writer.compose(
            request.segments, request.channel, request.purpose, request.offer,
            request.max_segments, request.brand_name, settings,
        )
        return [
            pb.MessageTemplate(
                segment_key=t.segment_key, text=t.text, writer=t.writer,
                encoding=_ENCODINGS[t.encoding], segments=t.segments,
            )
            for t in templates
        ]

    return compose
