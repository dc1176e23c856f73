"""SMS texts of the ledger: encoding, part count and the slots filled per customer.

The character-set and part-count rules live in retain_runtime.sms.
"""

from __future__ import annotations

import re

from retain.comms.v1 import comms_pb2
from retain_runtime import sms

# The maximum length of a first name in a slot, so the part count of a
# template is true for every customer.
MAX_FIRST_NAME = 20

# Used when a customer has no first name on file, by language.
FIRST_NAME_FALLBACK = {"en": "there", "sw": "rafiki"}

_SLOT = re.compile(r"\{(\w+)\}")


class TemplateError(Exception):
    """Raised when a template names a slot that no customer fact fills."""


def encoding_of(text: str) -> int:
    """Return the comms Encoding enum value the text needs."""
    if sms.shape(text).encoding == sms.GSM7:
        return comms_pb2.ENCODING_GSM_7
    return comms_pb2.ENCODING_UCS_2


def segment_count(text: str) -> int:
    """Return the number of SMS parts the text is billed as."""
    return sms.shape(text).segments


def longest_fill(template: str) -> str:
    """Return the template with each slot at its longest allowed value."""
    return _SLOT.sub(lambda match: "W" * MAX_FIRST_NAME, template)


def template_parts(template: str) -> tuple[int, int]:
    """Return the Encoding and SMS part count of a template with each slot at
    its longest, which is what a launch reserves for it."""
    longest = longest_fill(template)
    return encoding_of(longest), segment_count(longest)


def fill_slots(template: str, first_name: str, language: str) -> str:
    """Fill {first_name} in a template; raise TemplateError for other slots."""
    name = first_name.strip()[:MAX_FIRST_NAME] or FIRST_NAME_FALLBACK.get(
        language, FIRST_NAME_FALLBACK["en"]
    )

    def replace(match: re.Match[str]) -> str:
        if match.group(1) != "first_name":
            raise TemplateError(f"template slot {{{match.group(1)}}} has no value")
        return name

    return _SLOT.sub(replace, template)
