"""The questions of the USSD exit survey and their screens in English and
Swahili.

A screen is at most 182 characters, the maximum length of a USSD string on
GSM networks, with its "CON " or "END " prefix and a retry line included.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_SCREEN = 182


@dataclass(frozen=True)
class Question:
    """One survey question: its key in events and its valid inputs."""

    key: str
    # choices maps each valid input to the answer stored in the event.
    choices: dict[str, str]

    def parse(self, value: str) -> str | None:
        """Return the stored answer for an input, or None if it is invalid."""
        return self.choices.get(value)


STOP_REASON = Question(
    "stop_reason",
    {"1": "price", "2": "safety", "3": "other_service", "4": "moved", "5": "other"},
)
SATISFACTION = Question("satisfaction", {str(n): str(n) for n in range(1, 6)})
QUESTIONS = (STOP_REASON, SATISFACTION)

# Screens by language and name; "stop_reason:health" is the wording for
# customers of the health vertical.
TEXTS = {
    "en": {
        "stop_reason": "Why did you stop travelling with us?\n"
        "1. Price\n2. Safety\n3. Found another service\n4. Moved\n5. Other",
        "stop_reason:health": "Why did you stop visiting us?\n"
        "1. Price\n2. Safety\n3. Found another service\n4. Moved\n5. Other",
        "satisfaction": "How satisfied were you with our service?\n"
        "Reply 1 (not at all) to 5 (very satisfied)",
        "retry": "Invalid choice, please try again.",
        "thanks": "Thank you for your answers.",
        "unknown_number": "Sorry, this survey is for our customers only.",
        "unavailable": "Sorry, the survey is not available now. Please try later.",
    },
    "sw": {
        "stop_reason": "Kwa nini uliacha kusafiri nasi?\n"
        "1. Bei\n2. Usalama\n3. Nimepata huduma nyingine\n4. Nimehama\n5. Nyingine",
        "stop_reason:health": "Kwa nini uliacha kutumia huduma zetu?\n"
        "1. Bei\n2. Usalama\n3. Nimepata huduma nyingine\n4. Nimehama\n5. Nyingine",
        "satisfaction": "Uliridhika kiasi gani na huduma yetu?\n"
        "Jibu 1 (hata kidogo) hadi 5 (sana)",
        "retry": "Chaguo si sahihi, tafadhali jaribu tena.",
        "thanks": "Asante kwa majibu yako.",
        "unknown_number": "Samahani, utafiti huu ni kwa wateja wetu tu.",
        "unavailable": "Samahani, utafiti haupatikani sasa. Jaribu baadaye.",
    },
}


def screen(
    language: str, name: str, topic: str = "", retry: bool = False, end: bool = False
) -> str:
    """Return a screen with its "CON " or "END " prefix.

    topic picks a wording such as "stop_reason:health" where one exists, and
    retry puts the invalid-choice line first.
    """
    texts = TEXTS[language]
    body = texts.get(f"{name}:{topic}", texts[name])
    if retry:
        body = f"{texts['retry']}\n{body}"
    return ("END " if end else "CON ") + body
