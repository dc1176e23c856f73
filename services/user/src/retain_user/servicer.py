"""UserService RPCs: call the domain, build the reply.

Requests arrive checked by validators.py and from callers allowed by
policy.py. Auth, export, erasure and job RPCs are not built yet and fall
through to the generated base class, which returns UNIMPLEMENTED.
"""

from __future__ import annotations

from typing import Any

import grpc
import sqlalchemy as sa
from retain.user.v1 import user_pb2, user_pb2_grpc
from retain_runtime import paging
from retain_runtime.callers import current_caller
from retain_runtime.timestamps import from_datetime

from retain_user.consent import ConsentLedger, Contact
from retain_user.customers import CustomerDirectory, CustomerProfile

Context = grpc.aio.ServicerContext


class UserServicer(user_pb2_grpc.UserServiceServicer):
    """Customer profiles, the consent ledger and opt-outs."""

    def __init__(self, customers: CustomerDirectory, consent: ConsentLedger) -> None:
        self._customers = customers
        self._consent = consent

    async def UpsertCustomers(
        self, request: user_pb2.UpsertCustomersRequest, context: Context
    ) -> user_pb2.UpsertCustomersResponse:
        result = await self._customers.upsert(request.customers)
        return user_pb2.UpsertCustomersResponse(
            customer_ids=result.customer_ids, created_count=result.created_count
        )

    async def GetCustomer(
        self, request: user_pb2.GetCustomerRequest, context: Context
    ) -> user_pb2.GetCustomerResponse:
        profile = await self._customers.get(request.customer_id)
        return user_pb2.GetCustomerResponse(customer=_customer(profile))

    async def LookupCustomers(
        self, request: user_pb2.LookupCustomersRequest, context: Context
    ) -> user_pb2.LookupCustomersResponse:
        found = await self._customers.lookup(request.external_ids)
        return user_pb2.LookupCustomersResponse(customer_ids=found)

    async def ListCustomers(
        self, request: user_pb2.ListCustomersRequest, context: Context
    ) -> user_pb2.ListCustomersResponse:
        size = paging.page_size(request.page_size)
        after = paging.decode_token(request.page_token) or 0
        # Fetch one extra row to learn whether another page follows.
        profiles = await self._customers.page(after, size + 1, request.query)
        page = profiles[:size]
        token = ""
        if len(profiles) > size:
            token = paging.encode_token(page[-1].customer_id)
        return user_pb2.ListCustomersResponse(
            customers=[_customer(profile) for profile in page], next_page_token=token
        )

    async def GetCustomerStats(
        self, request: user_pb2.GetCustomerStatsRequest, context: Context
    ) -> user_pb2.GetCustomerStatsResponse:
        customers, marketing_sms, opted_out = await self._customers.stats()
        return user_pb2.GetCustomerStatsResponse(
            customer_count=customers,
            marketing_sms_consent_count=marketing_sms,
            opted_out_count=opted_out,
        )

    async def GetContacts(
        self, request: user_pb2.GetContactsRequest, context: Context
    ) -> user_pb2.GetContactsResponse:
        contacts = await self._consent.contacts(
            request.customer_ids, request.channel, request.purpose
        )
        return user_pb2.GetContactsResponse(contacts=[_contact(c) for c in contacts])

    async def RecordConsents(
        self, request: user_pb2.RecordConsentsRequest, context: Context
    ) -> user_pb2.RecordConsentsResponse:
        count = await self._consent.record(request.consents, _recorded_by())
        return user_pb2.RecordConsentsResponse(recorded_count=count)

    async def ListConsentEvents(
        self, request: user_pb2.ListConsentEventsRequest, context: Context
    ) -> user_pb2.ListConsentEventsResponse:
        size = paging.page_size(request.page_size)
        after = paging.decode_token(request.page_token) or 0
        rows = await self._consent.events(request.customer_id, after, size + 1)
        page = rows[:size]
        token = ""
        if len(rows) > size:
            token = paging.encode_token(page[-1].consent_event_id)
        return user_pb2.ListConsentEventsResponse(
            consent_events=[_consent_event(row) for row in page], next_page_token=token
        )

    async def CheckConsents(
        self, request: user_pb2.CheckConsentsRequest, context: Context
    ) -> user_pb2.CheckConsentsResponse:
        rows = await self._consent.check(
            request.customer_ids, request.channel, request.purpose
        )
        return user_pb2.CheckConsentsResponse(
            granted_customer_ids=[row.customer_id for row in rows],
            customers=[
                user_pb2.ConsentedCustomer(
                    customer_id=row.customer_id,
                    language=row.language,
                    vertical=row.vertical,
                )
                for row in rows
            ],
        )

    async def RecordOptOut(
        self, request: user_pb2.RecordOptOutRequest, context: Context
    ) -> user_pb2.RecordOptOutResponse:
        customer_ids, already = await self._consent.opt_out(request, _recorded_by())
        return user_pb2.RecordOptOutResponse(
            affected_customer_ids=customer_ids, already_opted_out=already
        )

    async def RecordOptIn(
        self, request: user_pb2.RecordOptInRequest, context: Context
    ) -> user_pb2.RecordOptInResponse:
        customer_ids = await self._consent.opt_in(request, _recorded_by())
        return user_pb2.RecordOptInResponse(affected_customer_ids=customer_ids)


def _recorded_by() -> str:
    """Return the audit name of the caller: the end user behind Envoy, else the mesh name."""
    caller = current_caller.get()
    if caller is None:
        return "unknown"
    return caller.subject or caller.name


def _customer(profile: CustomerProfile) -> user_pb2.Customer:
    return user_pb2.Customer(
        customer_id=profile.customer_id,
        external_id=profile.external_id,
        phone_number_masked=profile.phone_number_masked,
        language=profile.language,
        vertical=profile.vertical,
        first_name=profile.first_name,
        attributes=profile.attributes,
        fictitious=profile.fictitious,
        create_time=from_datetime(profile.create_time),
        update_time=from_datetime(profile.update_time),
    )


def _contact(contact: Contact) -> user_pb2.Contact:
    return user_pb2.Contact(
        customer_id=contact.customer_id,
        phone_number=contact.phone_number,
        language=contact.language,
        first_name=contact.first_name,
        vertical=contact.vertical,
        fictitious=contact.fictitious,
    )


def _consent_event(row: sa.Row[Any]) -> user_pb2.ConsentEvent:
    return user_pb2.ConsentEvent(
        consent_event_id=row.consent_event_id,
        customer_id=row.customer_id,
        channel=row.channel,
        purpose=row.purpose,
        granted=row.granted,
        source=row.source,
        notice_version=row.notice_version,
        evidence=row.evidence,
        recorded_by=row.recorded_by,
        occur_time=from_datetime(row.occur_time),
        record_time=from_datetime(row.record_time),
    )
