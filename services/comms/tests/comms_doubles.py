"""Small stand-ins for the user, inference and events services.

Each is served on a real mTLS server on port 0 with the peer's own
certificate and an allow-list of comms and worker, so the comms server and
worker reach them exactly as they reach the real services.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from retain.events.v1 import events_pb2, events_pb2_grpc
from retain.inference.v1 import inference_pb2, inference_pb2_grpc
from retain.type.v1 import channel_pb2
from retain.user.v1 import user_pb2, user_pb2_grpc
from retain_runtime.callers import CallPolicy
from retain_runtime.money import kes
from retain_runtime.paging import decode_token, encode_token
from retain_runtime.server import RunningServer, create_server
from retain_runtime.settings import ServiceSettings

TEMPLATES = {
    "en": "Hi {first_name}, we miss you at SafiriRide. Reply STOP to opt out.",
    "sw": "Habari {first_name}, tunakukumbuka SafiriRide. Jibu STOP kuacha.",
}


def phone_of(customer_id: int) -> str:
    return f"+2547{customer_id:08d}"


@dataclass
class FakeCustomer:
    customer_id: int
    language: int = user_pb2.LANGUAGE_EN
    vertical: int = user_pb2.VERTICAL_TRANSPORT
    first_name: str = "Amina"
    fictitious: bool = False

    @property
    def phone(self) -> str:
        return phone_of(self.customer_id)


@dataclass
class FakeUser(user_pb2_grpc.UserServiceServicer):
    """Customers with marketing SMS consent, those with marketing voice
    consent, the opt-outs received, and admin phone numbers by email."""

    customers: dict[int, FakeCustomer] = field(default_factory=dict)
    consented: set[int] = field(default_factory=set)
    voice_consented: set[int] = field(default_factory=set)
    admin_phones: dict[str, str] = field(default_factory=dict)
    opt_outs: list[user_pb2.RecordOptOutRequest] = field(default_factory=list)
    opt_ins: list[user_pb2.RecordOptInRequest] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, customer: FakeCustomer, consent: bool = True) -> None:
        with self.lock:
            self.customers[customer.customer_id] = customer
            if consent:
                self.consented.add(customer.customer_id)

    def withdraw(self, customer_id: int) -> None:
        with self.lock:
            self.consented.discard(customer_id)

    def grant_voice(self, customer_ids: list[int] | range) -> None:
        with self.lock:
            self.voice_consented.update(customer_ids)

    def withdraw_voice(self, customer_id: int) -> None:
        with self.lock:
            self.voice_consented.discard(customer_id)

    def _granted(self, request: Any) -> list[FakeCustomer]:
        if request.purpose != channel_pb2.PURPOSE_MARKETING:
            return []
        by_channel = {
            channel_pb2.CHANNEL_SMS: self.consented,
            channel_pb2.CHANNEL_VOICE: self.voice_consented,
        }
        with self.lock:
            consented = by_channel.get(request.channel, set())
            return [
                self.customers[c]
                for c in request.customer_ids
                if c in consented and c in self.customers
            ]

    async def CheckConsents(self, request, context):
        granted = self._granted(request)
        return user_pb2.CheckConsentsResponse(
            granted_customer_ids=[c.customer_id for c in granted],
            customers=[
                user_pb2.ConsentedCustomer(
                    customer_id=c.customer_id, language=c.language, vertical=c.vertical
                )
                for c in granted
            ],
        )

    async def GetContacts(self, request, context):
        return user_pb2.GetContactsResponse(
            contacts=[
                user_pb2.Contact(
                    customer_id=c.customer_id,
                    phone_number=c.phone,
                    language=c.language,
                    first_name=c.first_name,
                    vertical=c.vertical,
                    fictitious=c.fictitious,
                )
                for c in self._granted(request)
            ]
        )

    async def RecordOptOut(self, request, context):
        with self.lock:
            self.opt_outs.append(request)
            affected = [
                c.customer_id
                for c in self.customers.values()
                if c.phone == request.phone_number
            ]
            self.consented.difference_update(affected)
        return user_pb2.RecordOptOutResponse(affected_customer_ids=affected)

    async def GetAdminContact(self, request, context):
        if request.email not in self.admin_phones:
            await context.abort(grpc.StatusCode.NOT_FOUND, "no admin has this email")
        return user_pb2.GetAdminContactResponse(
            admin_id=1,
            email=request.email,
            phone_number=self.admin_phones[request.email],
        )

    async def LookupPhoneNumber(self, request, context):
        with self.lock:
            found = sorted(
                (c for c in self.customers.values() if c.phone == request.phone_number),
                key=lambda c: c.customer_id,
            )
        return user_pb2.LookupPhoneNumberResponse(
            customers=[
                user_pb2.PhoneNumberCustomer(
                    customer_id=c.customer_id,
                    language=c.language,
                    vertical=c.vertical,
                    fictitious=c.fictitious,
                )
                for c in found
            ]
        )

    async def RecordOptIn(self, request, context):
        with self.lock:
            self.opt_ins.append(request)
            affected = [
                c.customer_id
                for c in self.customers.values()
                if c.phone == request.phone_number
            ]
            self.consented.update(affected)
        return user_pb2.RecordOptInResponse(affected_customer_ids=affected)


@dataclass
class FakeInference(inference_pb2_grpc.InferenceServiceServicer):
    """One scoring run, and a template writer for English and Swahili."""

    scoring_run_id: int = 7
    scores: dict[int, float] = field(default_factory=dict)
    compose_requests: list[inference_pb2.ComposeMessagesRequest] = field(
        default_factory=list
    )

    async def ListScores(self, request, context):
        size = request.page_size or 1000
        after = decode_token(request.page_token) or 0
        ids = sorted(
            c
            for c, p in self.scores.items()
            if c > after and p >= request.min_churn_probability
        )
        page = ids[:size]
        return inference_pb2.ListScoresResponse(
            scores=[
                inference_pb2.Score(
                    customer_id=c,
                    scoring_run_id=self.scoring_run_id,
                    churn_probability=self.scores[c],
                    reasons=[inference_pb2.Reason(code="NO_ACTIVITY_SINCE")],
                )
                for c in page
            ],
            next_page_token=encode_token(page[-1]) if len(ids) > size else "",
            scoring_run_id=self.scoring_run_id,
        )

    async def ComposeMessages(self, request, context):
        self.compose_requests.append(request)
        return inference_pb2.ComposeMessagesResponse(
            templates=[
                inference_pb2.MessageTemplate(
                    segment_key=s.segment_key,
                    text=TEMPLATES[s.language],
                    writer="template",
                )
                for s in request.segments
            ]
        )


@dataclass
class FakeEvents(events_pb2_grpc.EventsServiceServicer):
    """Event counts and spend per customer, whatever the window, and the events
    ingested, kept once per event id as the events service does."""

    activity: dict[int, tuple[int, int]] = field(default_factory=dict)
    requests: list[events_pb2.GetCustomerActivityRequest] = field(default_factory=list)
    ingested: dict[str, events_pb2.Event] = field(default_factory=dict)

    async def IngestEvents(self, request, context):
        new = [e for e in request.events if e.event_id not in self.ingested]
        self.ingested.update((e.event_id, e) for e in new)
        return events_pb2.IngestEventsResponse(
            accepted_count=len(new), duplicate_count=len(request.events) - len(new)
        )

    async def GetCustomerActivity(self, request, context):
        self.requests.append(request)
        return events_pb2.GetCustomerActivityResponse(
            activities=[
                events_pb2.CustomerActivity(
                    customer_id=c,
                    event_count=self.activity.get(c, (0, 0))[0],
                    amount=kes(self.activity.get(c, (0, 0))[1]),
                )
                for c in request.customer_ids
            ]
        )


_PEERS = {
    "user": (
        "retain.user.v1.UserService",
        user_pb2_grpc.add_UserServiceServicer_to_server,
        [
            "CheckConsents",
            "GetContacts",
            "RecordOptOut",
            "RecordOptIn",
            "GetAdminContact",
            "LookupPhoneNumber",
        ],
    ),
    "inference": (
        "retain.inference.v1.InferenceService",
        inference_pb2_grpc.add_InferenceServiceServicer_to_server,
        ["ListScores", "ComposeMessages"],
    ),
    "events": (
        "retain.events.v1.EventsService",
        events_pb2_grpc.add_EventsServiceServicer_to_server,
        ["GetCustomerActivity", "IngestEvents"],
    ),
}


async def serve_double(name: str, servicer: object, cert_dir: Path) -> RunningServer:
    """Serve a double under the peer's mesh name, open to comms and worker."""
    service, add, methods = _PEERS[name]
    settings = ServiceSettings.from_env(
        name,
        {
            f"RETAIN_{name.upper()}_PORT": "0",
            f"RETAIN_{name.upper()}_DATABASE_URL": "unused",
            "RETAIN_CERT_DIR": str(cert_dir),
        },
    )
    policy = CallPolicy(service, {method: ["comms", "worker"] for method in methods})

    def register(server: grpc.aio.Server) -> None:
        add(servicer, server)

    return await create_server(settings, service, register, policy)
