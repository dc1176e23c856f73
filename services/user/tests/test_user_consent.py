"""The consent ledger, consent checks, contacts and opt-outs by phone number."""

from __future__ import annotations

import datetime as dt
import logging

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from retain.type.v1 import channel_pb2
from retain.user.v1 import user_pb2, user_pb2_grpc
from retain_runtime.clock import Clock
from user_helpers import (
    MARKETING,
    SERVICE,
    SMS,
    SMS_KEYWORD,
    StubFactory,
    check_request,
    consent,
    customer,
    rpc_error,
)

Stub = user_pb2_grpc.UserServiceStub
SHARED = "0712345678"


def timestamp(moment: dt.datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


async def add_customers(stub: Stub, *phones: str) -> list[int]:
    inputs = [customer(f"c-{index}", phone) for index, phone in enumerate(phones)]
    reply = await stub.UpsertCustomers(
        user_pb2.UpsertCustomersRequest(customers=inputs), timeout=10
    )
    return list(reply.customer_ids)


async def record(stub: Stub, *consents: user_pb2.ConsentInput) -> None:
    await stub.RecordConsents(
        user_pb2.RecordConsentsRequest(consents=consents), timeout=10
    )


async def checked(stub: Stub, ids: list[int], purpose: int = MARKETING) -> list[int]:
    reply = await stub.CheckConsents(check_request(ids, purpose), timeout=10)
    return list(reply.granted_customer_ids)


def opt_out(phone: str = SHARED, channel: int = 0) -> user_pb2.RecordOptOutRequest:
    return user_pb2.RecordOptOutRequest(
        phone_number=phone, channel=channel, source=SMS_KEYWORD, evidence="STOP"
    )


def opt_in(phone: str = SHARED) -> user_pb2.RecordOptInRequest:
    return user_pb2.RecordOptInRequest(
        phone_number=phone, source=SMS_KEYWORD, evidence="START"
    )


async def test_consent_latest_row_wins(operator: Stub) -> None:
    [customer_id] = await add_customers(operator, SHARED)
    assert await checked(operator, [customer_id]) == []

    await record(operator, consent(customer_id, granted=True))
    assert await checked(operator, [customer_id]) == [customer_id]

    await record(operator, consent(customer_id, granted=False))
    assert await checked(operator, [customer_id]) == []

    await record(operator, consent(customer_id, granted=True))
    assert await checked(operator, [customer_id]) == [customer_id]


async def test_latest_row_in_one_batch_wins(operator: Stub) -> None:
    [customer_id] = await add_customers(operator, SHARED)

    await record(operator, consent(customer_id, True), consent(customer_id, False))

    assert await checked(operator, [customer_id]) == []


async def test_older_grant_recorded_later_does_not_win(
    operator: Stub, clock: Clock
) -> None:
    [customer_id] = await add_customers(operator, SHARED)
    withdrawal = consent(customer_id, granted=False)
    withdrawal.occur_time.CopyFrom(timestamp(clock.now()))
    old_grant = consent(customer_id, granted=True)
    old_grant.occur_time.CopyFrom(timestamp(clock.now() - dt.timedelta(days=30)))

    await record(operator, withdrawal)
    await record(operator, old_grant)

    assert await checked(operator, [customer_id]) == []


async def test_consent_is_per_channel_and_purpose(operator: Stub) -> None:
    [customer_id] = await add_customers(operator, SHARED)

    await record(operator, consent(customer_id, channel=channel_pb2.CHANNEL_VOICE))

    assert await checked(operator, [customer_id]) == []


async def test_service_purpose_needs_no_opt_in(operator: Stub, comms: Stub) -> None:
    first, second = await add_customers(operator, "0712000001", "0712000002")
    await record(operator, consent(second, granted=False, purpose=SERVICE))
    assert await checked(operator, [first, second], SERVICE) == [first]

    await comms.RecordOptOut(opt_out("0712000001"))

    assert await checked(operator, [first, second], SERVICE) == []


async def test_check_keeps_request_order(operator: Stub) -> None:
    ids = await add_customers(operator, "0712000001", "0712000002", "0712000003")
    await record(operator, *[consent(customer_id) for customer_id in ids])

    assert await checked(operator, [3, 1, 2, 99]) == [3, 1, 2]


async def test_check_of_10000_ids_in_one_call(connect: StubFactory) -> None:
    operator = connect("operator")
    ids = await add_customers(operator, *[f"0712{n:06d}" for n in range(50)])
    await record(operator, *[consent(customer_id) for customer_id in ids[::2]])
    requested = list(range(10_000, 0, -1))

    granted = await checked(connect("worker"), requested)

    assert granted == sorted(ids[::2], reverse=True)


@pytest.mark.parametrize(
    ("field", "request_message"),
    [
        ("channel", user_pb2.CheckConsentsRequest(customer_ids=[1], purpose=MARKETING)),
        ("purpose", user_pb2.CheckConsentsRequest(customer_ids=[1], channel=SMS)),
        ("customer_ids", user_pb2.CheckConsentsRequest(channel=SMS, purpose=MARKETING)),
        ("customer_ids[1]", check_request([4, -1])),
        ("customer_ids[2]", check_request([4, 5, 4])),
        ("customer_ids", check_request(list(range(1, 10_002)))),
    ],
    ids=["no-channel", "no-purpose", "no-ids", "negative", "repeated", "too-many"],
)
async def test_invalid_check_names_field(
    operator: Stub, field: str, request_message: user_pb2.CheckConsentsRequest
) -> None:
    error = await rpc_error(operator.CheckConsents(request_message, timeout=10))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert (error.details() or "").startswith(f"{field}: ")


@pytest.mark.parametrize(
    ("field", "consent_input"),
    [
        ("consents[0].channel", consent(1, channel=0)),
        ("consents[0].purpose", consent(1, purpose=0)),
        ("consents[0].customer_id", consent(0)),
        (
            "consents[0].source",
            user_pb2.ConsentInput(customer_id=1, channel=SMS, purpose=MARKETING),
        ),
    ],
    ids=["no-channel", "no-purpose", "no-customer", "no-source"],
)
async def test_invalid_consent_names_field(
    operator: Stub, field: str, consent_input: user_pb2.ConsentInput
) -> None:
    error = await rpc_error(
        operator.RecordConsents(
            user_pb2.RecordConsentsRequest(consents=[consent_input])
        )
    )
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert (error.details() or "").startswith(f"{field}: ")


async def test_future_occur_time_rejected(operator: Stub, clock: Clock) -> None:
    [customer_id] = await add_customers(operator, SHARED)
    future = consent(customer_id)
    future.occur_time.CopyFrom(timestamp(clock.now() + dt.timedelta(days=1)))

    error = await rpc_error(
        operator.RecordConsents(user_pb2.RecordConsentsRequest(consents=[future]))
    )

    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert (error.details() or "").startswith("consents[0].occur_time: ")


async def test_consent_for_unknown_customer_not_found(operator: Stub) -> None:
    [customer_id] = await add_customers(operator, SHARED)

    error = await rpc_error(record(operator, consent(customer_id), consent(42)))

    assert error.code() is grpc.StatusCode.NOT_FOUND
    assert "customer 42 does not exist" in (error.details() or "")
    events = await operator.ListConsentEvents(
        user_pb2.ListConsentEventsRequest(customer_id=customer_id)
    )
    assert list(events.consent_events) == []


async def test_consent_events_keep_evidence_and_page(operator: Stub) -> None:
    [customer_id] = await add_customers(operator, SHARED)
    await record(operator, *[consent(customer_id, n % 2 == 0) for n in range(5)])

    first = await operator.ListConsentEvents(
        user_pb2.ListConsentEventsRequest(customer_id=customer_id, page_size=3)
    )
    rest = await operator.ListConsentEvents(
        user_pb2.ListConsentEventsRequest(
            customer_id=customer_id, page_token=first.next_page_token
        )
    )

    events = [*first.consent_events, *rest.consent_events]
    assert [event.consent_event_id for event in events] == [1, 2, 3, 4, 5]
    assert rest.next_page_token == ""
    assert events[0].recorded_by == "operator"
    assert events[0].source == user_pb2.CONSENT_SOURCE_API
    assert events[0].notice_version == "2024-01"
    assert events[0].evidence == "signup form"
    assert events[0].HasField("occur_time")
    assert events[0].HasField("record_time")


async def test_consent_events_of_unknown_customer_not_found(operator: Stub) -> None:
    error = await rpc_error(
        operator.ListConsentEvents(user_pb2.ListConsentEventsRequest(customer_id=3))
    )
    assert error.code() is grpc.StatusCode.NOT_FOUND


async def test_opt_out_applies_to_every_customer_sharing_number(
    operator: Stub, comms: Stub
) -> None:
    ids = await add_customers(operator, SHARED, "0712 345 678", "0799000000")
    await record(operator, *[consent(customer_id) for customer_id in ids])

    first = await comms.RecordOptOut(opt_out())
    second = await comms.RecordOptOut(opt_out())

    assert list(first.affected_customer_ids) == [1, 2]
    assert not first.already_opted_out
    assert list(second.affected_customer_ids) == [1, 2]
    assert second.already_opted_out
    assert await checked(operator, ids) == [3]


async def test_opt_out_writes_ledger_rows_per_channel(
    operator: Stub, comms: Stub
) -> None:
    [customer_id] = await add_customers(operator, SHARED)

    await comms.RecordOptOut(opt_out())

    reply = await operator.ListConsentEvents(
        user_pb2.ListConsentEventsRequest(customer_id=customer_id)
    )
    events = list(reply.consent_events)
    assert sorted(event.channel for event in events) == [1, 2, 3]
    assert all(not event.granted for event in events)
    assert all(event.source == SMS_KEYWORD for event in events)
    assert all(event.evidence == "STOP" for event in events)
    assert all(event.recorded_by == "comms" for event in events)


async def test_opt_out_of_one_channel_keeps_others(operator: Stub, comms: Stub) -> None:
    [customer_id] = await add_customers(operator, SHARED)
    await record(operator, consent(customer_id))

    voice = await comms.RecordOptOut(opt_out(channel=channel_pb2.CHANNEL_VOICE))
    assert await checked(operator, [customer_id]) == [customer_id]

    every = await comms.RecordOptOut(opt_out())
    assert await checked(operator, [customer_id]) == []
    assert not voice.already_opted_out
    assert not every.already_opted_out


async def test_opt_out_holds_for_customers_added_later(
    operator: Stub, comms: Stub
) -> None:
    reply = await comms.RecordOptOut(opt_out())
    [customer_id] = await add_customers(operator, SHARED)
    await record(operator, consent(customer_id))

    assert list(reply.affected_customer_ids) == []
    assert await checked(operator, [customer_id]) == []


async def test_opt_in_restores_consent(operator: Stub, comms: Stub) -> None:
    ids = await add_customers(operator, SHARED, SHARED.replace("07", "+2547", 1))
    await record(operator, *[consent(customer_id) for customer_id in ids])
    await comms.RecordOptOut(opt_out())

    reply = await comms.RecordOptIn(opt_in())
    after = await comms.RecordOptOut(opt_out())

    assert list(reply.affected_customer_ids) == ids
    assert not after.already_opted_out
    await comms.RecordOptIn(opt_in())
    assert await checked(operator, ids) == ids


async def test_stale_opt_in_does_not_undo_later_opt_out(
    operator: Stub, comms: Stub, clock: Clock
) -> None:
    [customer_id] = await add_customers(operator, SHARED)
    await record(operator, consent(customer_id))
    await comms.RecordOptOut(opt_out())
    stale = opt_in()
    stale.occur_time.CopyFrom(timestamp(clock.now() - dt.timedelta(hours=1)))

    await comms.RecordOptIn(stale)

    assert await checked(operator, [customer_id]) == []


async def test_opt_out_rejects_invalid_phone(comms: Stub) -> None:
    error = await rpc_error(comms.RecordOptOut(opt_out("12345")))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert (error.details() or "").startswith("phone_number: ")


async def test_opt_out_requires_source(comms: Stub) -> None:
    request = user_pb2.RecordOptOutRequest(phone_number=SHARED)
    error = await rpc_error(comms.RecordOptOut(request))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert (error.details() or "").startswith("source: ")


async def test_opt_out_denied_to_envoy(connect: StubFactory) -> None:
    error = await rpc_error(connect("envoy").RecordOptOut(opt_out()))
    assert error.code() is grpc.StatusCode.PERMISSION_DENIED


async def test_contacts_leave_out_customers_without_consent(
    operator: Stub, comms: Stub
) -> None:
    ids = await add_customers(operator, "0712000001", "0712000002", "0712000003")
    await record(operator, consent(ids[0]), consent(ids[2]), consent(ids[1], False))
    await comms.RecordOptOut(opt_out("0712000003"))

    reply = await comms.GetContacts(
        user_pb2.GetContactsRequest(customer_ids=ids, channel=SMS, purpose=MARKETING)
    )

    assert [contact.customer_id for contact in reply.contacts] == [ids[0]]
    assert reply.contacts[0].phone_number == "+254712000001"


async def test_logs_show_masked_numbers_only(
    operator: Stub, comms: Stub, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    [customer_id] = await add_customers(operator, SHARED)
    await record(operator, consent(customer_id))
    await comms.GetContacts(
        user_pb2.GetContactsRequest(
            customer_ids=[customer_id], channel=SMS, purpose=MARKETING
        )
    )
    await comms.RecordOptOut(opt_out())
    await comms.RecordOptIn(opt_in())

    assert "+2547******78" in caplog.text
    assert "712345678" not in caplog.text


async def test_consent_check_returns_language(operator: Stub) -> None:
    swahili = customer("c-sw", "0722000001")
    swahili.language = user_pb2.LANGUAGE_SW
    reply = await operator.UpsertCustomers(
        user_pb2.UpsertCustomersRequest(customers=[swahili]), timeout=10
    )
    [customer_id] = reply.customer_ids
    await record(operator, consent(customer_id, granted=True))

    checked_reply = await operator.CheckConsents(
        check_request([customer_id], MARKETING), timeout=10
    )

    [entry] = checked_reply.customers
    assert entry.customer_id == customer_id
    assert entry.language == user_pb2.LANGUAGE_SW
    assert entry.vertical == user_pb2.VERTICAL_TRANSPORT
