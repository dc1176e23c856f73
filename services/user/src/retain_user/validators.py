"""Request checks of the user service, one per RPC, run by the interceptor.

Each check raises InvalidArgument with the field path, such as
"customers[3].phone_number", and a message that explains how to fix the value.
Checks that compare times with now read the service's clock.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Hashable, Sequence
from typing import Any

from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper
from retain.type.v1 import channel_pb2
from retain.user.v1 import user_pb2
from retain_runtime import paging
from retain_runtime.clock import Clock
from retain_runtime.errors import InvalidArgument
from retain_runtime.interceptor import Validator
from retain_runtime.phone import normalise_phone
from retain_runtime.timestamps import to_datetime

from retain_user.admins import normalise_email
from retain_user.api_keys import DEFAULT_REQUESTS_PER_MINUTE

MAX_BATCH = 1000
MAX_CHECK_BATCH = 10_000
MAX_EXTERNAL_ID = 128
MAX_FIRST_NAME = 64
MAX_ATTRIBUTES = 64
MAX_ATTRIBUTE_KEY = 64
MAX_ATTRIBUTE_VALUE = 1024
MAX_NOTICE_VERSION = 64
MAX_EVIDENCE = 1024
MAX_QUERY = MAX_EXTERNAL_ID
MIN_PASSWORD = 12
# Long enough for any passphrase, short enough that hashing stays cheap.
MAX_PASSWORD = 1024
# token_urlsafe(32) returns 43 characters; the margin allows other formats.
MAX_REFRESH_TOKEN = 256
MAX_API_KEY_NAME = 120
MAX_REQUESTS_PER_MINUTE = 100_000
API_KEY_ID_LENGTH = 16
# How far a caller's occur_time may run ahead of this service's clock, to
# allow for clock skew. A later time would let a grant outrank withdrawals
# recorded after it.
FUTURE_TOLERANCE = dt.timedelta(minutes=5)
# The range google.protobuf.Timestamp allows: 0001-01-01 to 9999-12-31.
_MIN_SECONDS, _MAX_SECONDS = -62_135_596_800, 253_402_300_799


def build_validators(clock: Clock) -> dict[str, Validator]:
    """Return the check of every implemented RPC, keyed by method name."""

    def record_consents(request: user_pb2.RecordConsentsRequest) -> None:
        check_record_consents(request, clock)

    def opt_change(
        request: user_pb2.RecordOptOutRequest | user_pb2.RecordOptInRequest,
    ) -> None:
        check_opt_change(request, clock)

    return {
        "UpsertCustomers": check_upsert_customers,
        "GetCustomer": check_get_customer,
        "LookupCustomers": check_lookup_customers,
        "ListCustomers": check_list_customers,
        "GetContacts": check_get_contacts,
        "RecordConsents": record_consents,
        "ListConsentEvents": check_list_consent_events,
        "CheckConsents": check_check_consents,
        "RecordOptOut": opt_change,
        "RecordOptIn": opt_change,
        "GetAdminContact": check_get_admin_contact,
        "LookupPhoneNumber": check_lookup_phone_number,
        "SignIn": check_sign_in,
        "RefreshToken": check_refresh_token,
        "SignOut": check_refresh_token,
        "CreateAdmin": check_create_admin,
        "ListAdmins": check_list_page,
        "CreateApiKey": check_create_api_key,
        "ListApiKeys": check_list_page,
        "RevokeApiKey": check_revoke_api_key,
    }


def check_upsert_customers(request: user_pb2.UpsertCustomersRequest) -> None:
    _batch_size(request.customers, "customers", MAX_BATCH)
    for index, customer in enumerate(request.customers):
        path = f"customers[{index}]"
        _external_id(customer.external_id, f"{path}.external_id")
        normalise_phone(customer.phone_number, f"{path}.phone_number")
        _enum(customer.language, user_pb2.Language, f"{path}.language", False)
        _enum(customer.vertical, user_pb2.Vertical, f"{path}.vertical", False)
        _max_length(customer.first_name, f"{path}.first_name", MAX_FIRST_NAME)
        _attributes(customer.attributes, f"{path}.attributes")
    external_ids = [customer.external_id for customer in request.customers]
    _unique(external_ids, "customers", ".external_id")


def check_get_customer(request: user_pb2.GetCustomerRequest) -> None:
    _positive_id(request.customer_id, "customer_id")


def check_lookup_customers(request: user_pb2.LookupCustomersRequest) -> None:
    _batch_size(request.external_ids, "external_ids", MAX_BATCH)
    for index, external_id in enumerate(request.external_ids):
        _external_id(external_id, f"external_ids[{index}]")


def check_list_customers(request: user_pb2.ListCustomersRequest) -> None:
    paging.page_size(request.page_size)
    paging.decode_token(request.page_token)
    _max_length(request.query, "query", MAX_QUERY)


def check_get_contacts(request: user_pb2.GetContactsRequest) -> None:
    _customer_ids(request.customer_ids, MAX_BATCH)
    _channel_and_purpose(request)


def check_check_consents(request: user_pb2.CheckConsentsRequest) -> None:
    _customer_ids(request.customer_ids, MAX_CHECK_BATCH)
    _channel_and_purpose(request)


def check_record_consents(
    request: user_pb2.RecordConsentsRequest, clock: Clock
) -> None:
    _batch_size(request.consents, "consents", MAX_BATCH)
    now = clock.now()
    for index, consent in enumerate(request.consents):
        path = f"consents[{index}]"
        _positive_id(consent.customer_id, f"{path}.customer_id")
        _enum(consent.channel, channel_pb2.Channel, f"{path}.channel", True)
        _enum(consent.purpose, channel_pb2.Purpose, f"{path}.purpose", True)
        _enum(consent.source, user_pb2.ConsentSource, f"{path}.source", True)
        _max_length(
            consent.notice_version, f"{path}.notice_version", MAX_NOTICE_VERSION
        )
        _max_length(consent.evidence, f"{path}.evidence", MAX_EVIDENCE)
        _occur_time(consent, f"{path}.occur_time", now)


def check_list_consent_events(request: user_pb2.ListConsentEventsRequest) -> None:
    _positive_id(request.customer_id, "customer_id")
    paging.page_size(request.page_size)
    paging.decode_token(request.page_token)


def check_opt_change(
    request: user_pb2.RecordOptOutRequest | user_pb2.RecordOptInRequest,
    clock: Clock,
) -> None:
    normalise_phone(request.phone_number, "phone_number")
    # CHANNEL_UNSPECIFIED is allowed here and means every channel.
    _enum(request.channel, channel_pb2.Channel, "channel", False)
    _enum(request.source, user_pb2.ConsentSource, "source", True)
    _max_length(request.evidence, "evidence", MAX_EVIDENCE)
    _occur_time(request, "occur_time", clock.now())


def check_get_admin_contact(request: user_pb2.GetAdminContactRequest) -> None:
    normalise_email(request.email)


def check_lookup_phone_number(request: user_pb2.LookupPhoneNumberRequest) -> None:
    normalise_phone(request.phone_number, "phone_number")


def check_sign_in(request: user_pb2.SignInRequest) -> None:
    normalise_email(request.email)
    if not request.password:
        raise InvalidArgument("password", "is empty; send the account's password")
    _max_length(request.password, "password", MAX_PASSWORD)


def check_refresh_token(
    request: user_pb2.RefreshTokenRequest | user_pb2.SignOutRequest,
) -> None:
    if not request.refresh_token:
        raise InvalidArgument(
            "refresh_token", "is empty; send the refresh_token that SignIn returned"
        )
    _max_length(request.refresh_token, "refresh_token", MAX_REFRESH_TOKEN)


def check_create_admin(request: user_pb2.CreateAdminRequest) -> None:
    normalise_email(request.email)
    if len(request.password) < MIN_PASSWORD:
        raise InvalidArgument(
            "password",
            f"has {len(request.password)} characters; use at least {MIN_PASSWORD}",
        )
    _max_length(request.password, "password", MAX_PASSWORD)
    _enum(request.role, user_pb2.Role, "role", True)
    if request.phone_number:
        normalise_phone(request.phone_number, "phone_number")


def check_list_page(
    request: user_pb2.ListAdminsRequest | user_pb2.ListApiKeysRequest,
) -> None:
    paging.page_size(request.page_size)
    paging.decode_token(request.page_token)


def check_create_api_key(request: user_pb2.CreateApiKeyRequest) -> None:
    if not request.name.strip():
        raise InvalidArgument("name", "is empty; name the partner that uses the key")
    _max_length(request.name, "name", MAX_API_KEY_NAME)
    rate = request.requests_per_minute
    if rate != 0 and not 1 <= rate <= MAX_REQUESTS_PER_MINUTE:
        raise InvalidArgument(
            "requests_per_minute",
            f"{rate} is out of range; use 1 to {MAX_REQUESTS_PER_MINUTE}, "
            f"or 0 for {DEFAULT_REQUESTS_PER_MINUTE}",
        )


def check_revoke_api_key(request: user_pb2.RevokeApiKeyRequest) -> None:
    api_key_id = request.api_key_id
    hex_digits = all(character in "0123456789abcdef" for character in api_key_id)
    if len(api_key_id) != API_KEY_ID_LENGTH or not hex_digits:
        raise InvalidArgument(
            "api_key_id",
            f"is not an API key id; send the {API_KEY_ID_LENGTH} hex digits "
            "after rk_ that ListApiKeys returns",
        )


def _batch_size(items: Sequence[Any], field: str, maximum: int) -> None:
    if not 1 <= len(items) <= maximum:
        raise InvalidArgument(
            field, f"has {len(items)} items; send 1 to {maximum} per request"
        )


def _external_id(value: str, path: str) -> None:
    if not value:
        raise InvalidArgument(path, "is empty; send the startup's customer id")
    _max_length(value, path, MAX_EXTERNAL_ID)


def _max_length(value: str, path: str, maximum: int) -> None:
    if len(value) > maximum:
        raise InvalidArgument(
            path, f"has {len(value)} characters; shorten it to at most {maximum}"
        )


def _positive_id(value: int, path: str) -> None:
    if value <= 0:
        raise InvalidArgument(
            path, f"{value} is not a customer id; ids are positive integers"
        )


def _customer_ids(customer_ids: Sequence[int], maximum: int) -> None:
    _batch_size(customer_ids, "customer_ids", maximum)
    for index, customer_id in enumerate(customer_ids):
        _positive_id(customer_id, f"customer_ids[{index}]")
    _unique(list(customer_ids), "customer_ids", "")


def _unique(values: Sequence[Hashable], field: str, suffix: str) -> None:
    """Raise naming the second of two equal values, such as customers[4].external_id."""
    first_index: dict[Hashable, int] = {}
    for index, value in enumerate(values):
        if value in first_index:
            raise InvalidArgument(
                f"{field}[{index}]{suffix}",
                f"repeats {field}[{first_index[value]}]{suffix}; "
                "send each value once per request",
            )
        first_index[value] = index


def _enum(value: int, enum: EnumTypeWrapper, path: str, required: bool) -> None:
    names = [item.name for item in enum.DESCRIPTOR.values if item.number != 0]
    if value == 0 and required:
        raise InvalidArgument(path, f"is not set; use one of {', '.join(names)}")
    if value != 0 and value not in enum.DESCRIPTOR.values_by_number:
        raise InvalidArgument(
            path, f"{value} is not a known value; use one of {', '.join(names)}"
        )


def _channel_and_purpose(
    request: user_pb2.GetContactsRequest | user_pb2.CheckConsentsRequest,
) -> None:
    _enum(request.channel, channel_pb2.Channel, "channel", True)
    _enum(request.purpose, channel_pb2.Purpose, "purpose", True)


def _attributes(attributes: Any, path: str) -> None:
    if len(attributes) > MAX_ATTRIBUTES:
        raise InvalidArgument(
            path, f"has {len(attributes)} entries; send at most {MAX_ATTRIBUTES}"
        )
    for key, value in attributes.items():
        if not key:
            raise InvalidArgument(path, "has an empty key; name every attribute")
        _max_length(key, f"{path}[{key[:MAX_ATTRIBUTE_KEY]!r}]", MAX_ATTRIBUTE_KEY)
        _max_length(value, f"{path}[{key!r}]", MAX_ATTRIBUTE_VALUE)


def _occur_time(message: Any, path: str, now: dt.datetime) -> None:
    """Check an optional occur_time: a valid Timestamp, not in the future."""
    if not message.HasField("occur_time"):
        return
    stamp = message.occur_time
    in_range = _MIN_SECONDS <= stamp.seconds <= _MAX_SECONDS
    if not in_range or not 0 <= stamp.nanos < 1_000_000_000:
        raise InvalidArgument(
            path, "is outside the Timestamp range; send a time in years 1 to 9999"
        )
    moment = to_datetime(stamp)
    if moment > now + FUTURE_TOLERANCE:
        raise InvalidArgument(
            path,
            f"{moment.isoformat()} is in the future; send the time the customer "
            "gave or withdrew consent, or leave it unset for now",
        )
