"""UserService RPCs: call the domain, build the reply.

Requests arrive checked by validators.py and from callers allowed by
policy.py; role checks happen in the domain modules. Export, erasure and job
RPCs are not built yet and fall through to the generated base class, which
returns UNIMPLEMENTED.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc
import sqlalchemy as sa
from retain.user.v1 import user_pb2, user_pb2_grpc
from retain_runtime import paging
from retain_runtime.callers import current_caller
from retain_runtime.timestamps import from_datetime

from retain_user.admins import Admin, AdminDirectory
from retain_user.api_keys import ApiKey, ApiKeys
from retain_user.consent import ConsentLedger, Contact
from retain_user.customers import CustomerDirectory, CustomerProfile
from retain_user.sign_in import SignInChecker
from retain_user.signing_keys import SigningKeys
from retain_user.tokens import TokenIssuer

Context = grpc.aio.ServicerContext


@dataclass(frozen=True)
class Accounts:
    """The domain objects behind the admin, token and API key RPCs."""

    admins: AdminDirectory
    sign_in: SignInChecker
    tokens: TokenIssuer
    signing_keys: SigningKeys
    api_keys: ApiKeys


class UserServicer(user_pb2_grpc.UserServiceServicer):
    """Customer profiles, the consent ledger, opt-outs, admins and API keys."""

    def __init__(
        self, customers: CustomerDirectory, consent: ConsentLedger, accounts: Accounts
    ) -> None:
        self._customers = customers
        self._consent = consent
        self._accounts = accounts

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

    async def GetAdminContact(
        self, request: user_pb2.GetAdminContactRequest, context: Context
    ) -> user_pb2.GetAdminContactResponse:
        contact = await self._accounts.admins.contact(request.email)
        return user_pb2.GetAdminContactResponse(
            admin_id=contact.admin_id,
            email=contact.email,
            phone_number=contact.phone_number,
        )

    async def LookupPhoneNumber(
        self, request: user_pb2.LookupPhoneNumberRequest, context: Context
    ) -> user_pb2.LookupPhoneNumberResponse:
        rows = await self._customers.by_phone_number(request.phone_number)
        return user_pb2.LookupPhoneNumberResponse(
            customers=[
                user_pb2.PhoneNumberCustomer(
                    customer_id=row.customer_id,
                    language=row.language,
                    vertical=row.vertical,
                    fictitious=row.fictitious,
                )
                for row in rows
            ]
        )

    async def SignIn(
        self, request: user_pb2.SignInRequest, context: Context
    ) -> user_pb2.SignInResponse:
        admin = await self._accounts.sign_in.authenticate(
            request.email, request.password
        )
        tokens = await self._accounts.tokens.start_session(admin)
        return user_pb2.SignInResponse(
            access_token=tokens.access_token,
            access_token_ttl_seconds=tokens.access_token_ttl_seconds,
            refresh_token=tokens.refresh_token,
            admin=_admin(admin),
        )

    async def RefreshToken(
        self, request: user_pb2.RefreshTokenRequest, context: Context
    ) -> user_pb2.RefreshTokenResponse:
        tokens = await self._accounts.tokens.refresh(request.refresh_token)
        return user_pb2.RefreshTokenResponse(
            access_token=tokens.access_token,
            access_token_ttl_seconds=tokens.access_token_ttl_seconds,
            refresh_token=tokens.refresh_token,
        )

    async def SignOut(
        self, request: user_pb2.SignOutRequest, context: Context
    ) -> user_pb2.SignOutResponse:
        await self._accounts.tokens.sign_out(request.refresh_token)
        return user_pb2.SignOutResponse()

    async def GetSigningKeys(
        self, request: user_pb2.GetSigningKeysRequest, context: Context
    ) -> user_pb2.GetSigningKeysResponse:
        jwks = await self._accounts.signing_keys.published()
        return user_pb2.GetSigningKeysResponse(keys=[_json_web_key(j) for j in jwks])

    async def CreateAdmin(
        self, request: user_pb2.CreateAdminRequest, context: Context
    ) -> user_pb2.CreateAdminResponse:
        admin = await self._accounts.admins.create(request)
        return user_pb2.CreateAdminResponse(admin=_admin(admin))

    async def ListAdmins(
        self, request: user_pb2.ListAdminsRequest, context: Context
    ) -> user_pb2.ListAdminsResponse:
        size = paging.page_size(request.page_size)
        after = paging.decode_token(request.page_token) or 0
        admins = await self._accounts.admins.page(after, size + 1)
        page = admins[:size]
        token = ""
        if len(admins) > size:
            token = paging.encode_token(page[-1].admin_id)
        return user_pb2.ListAdminsResponse(
            admins=[_admin(admin) for admin in page], next_page_token=token
        )

    async def CreateApiKey(
        self, request: user_pb2.CreateApiKeyRequest, context: Context
    ) -> user_pb2.CreateApiKeyResponse:
        api_key, secret = await self._accounts.api_keys.create(
            request.name, request.requests_per_minute
        )
        return user_pb2.CreateApiKeyResponse(api_key=_api_key(api_key), secret=secret)

    async def ListApiKeys(
        self, request: user_pb2.ListApiKeysRequest, context: Context
    ) -> user_pb2.ListApiKeysResponse:
        size = paging.page_size(request.page_size)
        after = paging.decode_token(request.page_token) or 0
        keys = await self._accounts.api_keys.page(after, size + 1)
        page = keys[:size]
        token = ""
        if len(keys) > size:
            token = paging.encode_token(page[-1].list_position)
        return user_pb2.ListApiKeysResponse(
            api_keys=[_api_key(key) for key in page], next_page_token=token
        )

    async def RevokeApiKey(
        self, request: user_pb2.RevokeApiKeyRequest, context: Context
    ) -> user_pb2.RevokeApiKeyResponse:
        api_key = await self._accounts.api_keys.revoke(request.api_key_id)
        return user_pb2.RevokeApiKeyResponse(api_key=_api_key(api_key))


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


def _admin(admin: Admin) -> user_pb2.Admin:
    return user_pb2.Admin(
        admin_id=admin.admin_id,
        email=admin.email,
        role=admin.role,
        phone_number_masked=admin.phone_number_masked,
        create_time=from_datetime(admin.create_time),
        locked_until_time=from_datetime(admin.locked_until_time),
    )


def _api_key(api_key: ApiKey) -> user_pb2.ApiKey:
    return user_pb2.ApiKey(
        api_key_id=api_key.api_key_id,
        name=api_key.name,
        requests_per_minute=api_key.requests_per_minute,
        created_by=api_key.created_by,
        create_time=from_datetime(api_key.create_time),
        revoke_time=from_datetime(api_key.revoke_time),
    )


def _json_web_key(jwk: dict[str, str]) -> user_pb2.JsonWebKey:
    return user_pb2.JsonWebKey(
        kty=jwk["kty"],
        kid=jwk["kid"],
        use=jwk["use"],
        alg=jwk["alg"],
        crv=jwk["crv"],
        x=jwk["x"],
        y=jwk["y"],
    )
