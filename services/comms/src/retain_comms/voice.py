"""Responses to Africa's Talking's voice callback, in AT's XML.

AT posts the callback when a call connects (isActive=1) and once more when it
ends (isActive=0, with durationInSeconds, currencyCode and amount). Other
fields are sessionId, direction ("Inbound" or "Outbound"), callerNumber (the
customer's number) and destinationNumber (Retain's AT number). A connected
call is answered with a short message read in the customer's language; the
final callback gets an empty Response because the call is over.
"""

from __future__ import annotations

import logging
from xml.sax.saxutils import escape, quoteattr

from retain_runtime.errors import Unavailable
from retain_runtime.logs import mask_phone

from retain_comms.callbacks import customers_of_number, parse_form
from retain_comms.peers import Peers
from retain_comms.selection import language_code

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
    """Builds the XML response to each voice callback."""

    def __init__(self, peers: Peers) -> None:
        self.peers = peers

    async def respond(self, body: bytes) -> str:
        form = parse_form(body)
        session_id = form.get("sessionId", "")[:80]
        if form.get("isActive") != "1":
            log.info(
                "Voice call %s ended after %s s, costing %s %s",
                session_id,
                form.get("durationInSeconds", "?"),
                form.get("currencyCode", ""),
                form.get("amount", "?"),
            )
            return EMPTY_RESPONSE
        language = await self._language(form.get("callerNumber", ""))
        log.info(
            "Responded to voice call %s (%s) with %s in %s",
            session_id,
            form.get("direction", "unknown direction"),
            mask_phone(form.get("callerNumber", "")),
            language,
        )
        return say(MESSAGES[language])

    async def _language(self, raw_phone: str) -> str:
        """Return the language of the first customer with the number, else "en"."""
        try:
            customers = await customers_of_number(self.peers, raw_phone)
        except Unavailable:
            # A caller on the line is better served in English than not at all.
            return "en"
        return language_code(customers[0].language) if customers else "en"
