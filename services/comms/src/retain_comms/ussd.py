"""The USSD exit survey, one step per Africa's Talking USSD callback.

AT posts sessionId, serviceCode, phoneNumber, networkCode and text. The text
joins every input of the session with "*" and is empty on the first request.
The reply is text/plain starting with "CON " to wait for another input or
"END " to close the session, at most 182 characters.

The survey asks why the customer stopped using the service (1 to 5), then
how satisfied they were (1 to 5), then thanks them, in English or Swahili as
the user service has the customer's language. An invalid input asks the same
question again. Because text keeps invalid inputs too, the answers cannot be
read from text alone, so each session's state lives in Redis with a TTL.

Each valid answer becomes an EVENT_TYPE_SURVEY_ANSWER event of every customer
who shares the number, with the event id "ussd-<sessionId>-<step>-<customer
id>", so a repeated request stores nothing twice. A customer can be invited
to dial the code by an ordinary SMS campaign whose offer names it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field

import redis.asyncio
from redis import RedisError
from retain.events.v1 import events_pb2
from retain.user.v1 import user_pb2
from retain_runtime.clock import Clock
from retain_runtime.errors import Unavailable
from retain_runtime.logs import mask_phone
from retain_runtime.timestamps import from_datetime

from retain_comms.callbacks import customers_of_number, parse_form
from retain_comms.peers import Peers
from retain_comms.selection import call_peer, language_code
from retain_comms.ussd_texts import QUESTIONS, Question, screen

log = logging.getLogger(__name__)

# Seconds a session's state is kept after its last step. Operators end an idle
# USSD session after two to three minutes (an estimate, since it varies by
# operator), so five minutes outlasts every session.
SESSION_TTL_SECONDS = 300
# The maximum sessionId length accepted, so every event id stays within the
# events service's limit of 128 characters.
MAX_SESSION_ID = 80


@dataclass
class SurveyState:
    """The questions asked and the answers received in one session."""

    language: str
    topic: str
    customer_ids: list[int]
    # input_count counts the inputs of text already handled, valid or not.
    input_count: int = 0
    answers: list[str] = field(default_factory=list)
    reply: str = ""


class UssdSurvey:
    """Responds to USSD callbacks with the exit survey and stores the answers."""

    def __init__(
        self, peers: Peers, client: redis.asyncio.Redis, namespace: str, clock: Clock
    ) -> None:
        self.peers = peers
        self.client = client
        self.namespace = namespace
        self.clock = clock

    async def respond(self, body: bytes) -> str:
        """Return the CON or END text for one step of a session."""
        form = parse_form(body)
        session_id = form.get("sessionId", "")
        if not 0 < len(session_id) <= MAX_SESSION_ID:
            log.warning("Ended a USSD request with a missing or too long sessionId")
            return screen("en", "unavailable", end=True)
        try:
            return await self._step(session_id, form)
        except (Unavailable, RedisError) as error:
            log.warning("USSD session %s ended early: %s", session_id, error)
            return screen("en", "unavailable", end=True)

    async def _step(self, session_id: str, form: dict[str, str]) -> str:
        text = form.get("text", "")
        inputs = text.split("*") if text else []
        state = await self._load(session_id)
        if state is None:
            state = await self._start(form.get("phoneNumber", ""))
            log.info(
                "USSD session %s started from %s for customers %s",
                session_id,
                mask_phone(form.get("phoneNumber", "")),
                state.customer_ids,
            )
        elif len(inputs) <= state.input_count:
            # AT sent a step again that was handled already, so the earlier
            # reply is returned and nothing is stored twice.
            return state.reply
        invalid = False
        for value in inputs[state.input_count :]:
            invalid = not await self._take(session_id, state, value.strip())
        state.input_count = max(len(inputs), state.input_count)
        state.reply = self._prompt(state, invalid)
        await self._save(session_id, state)
        return state.reply

    async def _start(self, raw_phone: str) -> SurveyState:
        customers = await customers_of_number(self.peers, raw_phone)
        if not customers:
            return SurveyState(language="en", topic="transport", customer_ids=[])
        first = customers[0]
        topic = "health" if first.vertical == user_pb2.VERTICAL_HEALTH else "transport"
        return SurveyState(
            language=language_code(first.language),
            topic=topic,
            customer_ids=[c.customer_id for c in customers],
        )

    async def _take(self, session_id: str, state: SurveyState, value: str) -> bool:
        """Store a valid answer to the current question; return whether it was."""
        if not state.customer_ids or len(state.answers) == len(QUESTIONS):
            return True
        question = QUESTIONS[len(state.answers)]
        answer = question.parse(value)
        if answer is None:
            return False
        await self._record(session_id, state, question, answer)
        state.answers.append(answer)
        return True

    def _prompt(self, state: SurveyState, invalid: bool) -> str:
        if not state.customer_ids:
            return screen(state.language, "unknown_number", end=True)
        if len(state.answers) == len(QUESTIONS):
            return screen(state.language, "thanks", end=True)
        question = QUESTIONS[len(state.answers)]
        return screen(state.language, question.key, topic=state.topic, retry=invalid)

    async def _record(
        self, session_id: str, state: SurveyState, question: Question, answer: str
    ) -> None:
        step = len(state.answers) + 1
        occur_time = from_datetime(self.clock.now())
        events = [
            events_pb2.Event(
                event_id=f"ussd-{session_id}-{step}-{customer_id}",
                customer_id=customer_id,
                type=events_pb2.EVENT_TYPE_SURVEY_ANSWER,
                occur_time=occur_time,
                attributes={"question": question.key, "answer": answer},
            )
            for customer_id in state.customer_ids
        ]
        reply = await call_peer(
            self.peers.events.IngestEvents,
            events_pb2.IngestEventsRequest(events=events),
            "events.IngestEvents",
        )
        log.info(
            "USSD session %s stored %s: %d new events, %d repeats",
            session_id,
            question.key,
            reply.accepted_count,
            reply.duplicate_count,
        )

    def _key(self, session_id: str) -> str:
        return f"{self.namespace}:ussd:{session_id}"

    async def _load(self, session_id: str) -> SurveyState | None:
        raw = await self.client.get(self._key(session_id))
        if raw is None:
            return None
        return SurveyState(**json.loads(raw))

    async def _save(self, session_id: str, state: SurveyState) -> None:
        await self.client.set(
            self._key(session_id),
            json.dumps(dataclasses.asdict(state)),
            ex=SESSION_TTL_SECONDS,
        )
