"""Customer profiles: upsert, reads, paging, encryption at rest and access."""

from __future__ import annotations

import grpc
import pytest
import sqlalchemy as sa
from retain.user.v1 import user_pb2, user_pb2_grpc
from retain_user.settings import UserSettings
from user_helpers import MARKETING, SMS, StubFactory, consent, customer, rpc_error

Stub = user_pb2_grpc.UserServiceStub


async def upsert(
    stub: Stub, *inputs: user_pb2.CustomerInput
) -> user_pb2.UpsertCustomersResponse:
    request = user_pb2.UpsertCustomersRequest(customers=inputs)
    return await stub.UpsertCustomers(request, timeout=10)


async def test_upsert_round_trip(operator: Stub) -> None:
    first = user_pb2.CustomerInput(
        external_id="rider-1",
        phone_number="0712345678",
        language=user_pb2.LANGUAGE_SW,
        vertical=user_pb2.VERTICAL_HEALTH,
        first_name="Wanjiru",
        attributes={"city": "Nairobi"},
        fictitious=True,
    )
    reply = await upsert(operator, first, customer("rider-2", "0722000111"))
    assert list(reply.customer_ids) == [1, 2]
    assert reply.created_count == 2

    stored = (
        await operator.GetCustomer(user_pb2.GetCustomerRequest(customer_id=1))
    ).customer
    assert stored.external_id == "rider-1"
    assert stored.language == user_pb2.LANGUAGE_SW
    assert stored.vertical == user_pb2.VERTICAL_HEALTH
    assert stored.first_name == "Wanjiru"
    assert dict(stored.attributes) == {"city": "Nairobi"}
    assert stored.fictitious
    assert stored.HasField("create_time")

    defaults = (
        await operator.GetCustomer(user_pb2.GetCustomerRequest(customer_id=2))
    ).customer
    assert defaults.language == user_pb2.LANGUAGE_EN
    assert defaults.vertical == user_pb2.VERTICAL_TRANSPORT

    lookup = await operator.LookupCustomers(
        user_pb2.LookupCustomersRequest(external_ids=["rider-2", "rider-1", "nobody"])
    )
    assert dict(lookup.customer_ids) == {"rider-1": 1, "rider-2": 2}


async def test_second_upsert_is_idempotent(operator: Stub) -> None:
    inputs = [customer("a", "0712000001"), customer("b", "0712000002")]
    first = await upsert(operator, *inputs)
    before = (
        await operator.GetCustomer(user_pb2.GetCustomerRequest(customer_id=1))
    ).customer

    second = await upsert(operator, *reversed(inputs))

    after = (
        await operator.GetCustomer(user_pb2.GetCustomerRequest(customer_id=1))
    ).customer
    assert list(second.customer_ids) == list(reversed(first.customer_ids))
    assert second.created_count == 0
    assert after.update_time == before.update_time


async def test_upsert_updates_profile(operator: Stub) -> None:
    await upsert(operator, customer("a", "0712000001", first_name="Ann"))
    request = user_pb2.GetCustomerRequest(customer_id=1)
    before = (await operator.GetCustomer(request)).customer

    reply = await upsert(operator, customer("a", "0712000099", first_name="Anne"))

    after = (await operator.GetCustomer(request)).customer
    assert list(reply.customer_ids) == [1]
    assert reply.created_count == 0
    assert after.first_name == "Anne"
    assert after.phone_number_masked.endswith("99")
    assert after.update_time.ToDatetime() > before.update_time.ToDatetime()


async def test_empty_attributes_keep_stored_ones(operator: Stub) -> None:
    with_attributes = customer("a")
    with_attributes.attributes["plan"] = "gold"
    await upsert(operator, with_attributes)

    await upsert(operator, customer("a"))

    stored = (
        await operator.GetCustomer(user_pb2.GetCustomerRequest(customer_id=1))
    ).customer
    assert dict(stored.attributes) == {"plan": "gold"}


async def test_invalid_phone_names_field(operator: Stub) -> None:
    error = await rpc_error(
        upsert(operator, customer("a"), customer("b", "0722 12"), customer("c"))
    )
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert (error.details() or "").startswith("customers[1].phone_number: ")
    assert "0712345678 or +254712345678" in (error.details() or "")


@pytest.mark.parametrize(
    ("field", "request_message"),
    [
        ("customers", user_pb2.UpsertCustomersRequest()),
        (
            "customers[0].external_id",
            user_pb2.UpsertCustomersRequest(customers=[customer("")]),
        ),
        (
            "customers[0].external_id",
            user_pb2.UpsertCustomersRequest(customers=[customer("x" * 129)]),
        ),
        (
            "customers[2].external_id",
            user_pb2.UpsertCustomersRequest(
                customers=[customer("a"), customer("b"), customer("a")]
            ),
        ),
        (
            "customers[0].language",
            user_pb2.UpsertCustomersRequest(
                customers=[
                    user_pb2.CustomerInput(
                        external_id="a", phone_number="0712345678", language=9
                    )
                ]
            ),
        ),
    ],
    ids=[
        "empty-batch",
        "empty-external-id",
        "long-external-id",
        "duplicate",
        "bad-enum",
    ],
)
async def test_invalid_upsert_names_field(
    operator: Stub, field: str, request_message: user_pb2.UpsertCustomersRequest
) -> None:
    error = await rpc_error(operator.UpsertCustomers(request_message, timeout=10))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert (error.details() or "").startswith(f"{field}: ")


@pytest.mark.parametrize(
    "raw",
    [
        "0712345678",
        "0712 345 678",
        "0712-345-678",
        "712345678",
        "254712345678",
        "+254712345678",
        "+254 712 345 678",
        "(0712) 345678",
    ],
    ids=["07", "spaces", "dashes", "bare", "254", "e164", "e164-spaces", "brackets"],
)
async def test_kenyan_phone_forms_stored_as_e164(
    operator: Stub, comms: Stub, raw: str
) -> None:
    await upsert(operator, customer("a", raw))
    await operator.RecordConsents(user_pb2.RecordConsentsRequest(consents=[consent(1)]))

    reply = await comms.GetContacts(
        user_pb2.GetContactsRequest(customer_ids=[1], channel=SMS, purpose=MARKETING)
    )

    assert [contact.phone_number for contact in reply.contacts] == ["+254712345678"]


async def test_01_number_stored_as_e164(operator: Stub, comms: Stub) -> None:
    await upsert(operator, customer("a", "0110 123456", first_name="Otieno"))
    await operator.RecordConsents(user_pb2.RecordConsentsRequest(consents=[consent(1)]))

    reply = await comms.GetContacts(
        user_pb2.GetContactsRequest(customer_ids=[1], channel=SMS, purpose=MARKETING)
    )

    assert len(reply.contacts) == 1
    assert reply.contacts[0].phone_number == "+254110123456"
    assert reply.contacts[0].first_name == "Otieno"
    assert reply.contacts[0].language == user_pb2.LANGUAGE_EN


async def test_get_customer_returns_masked_phone_only(operator: Stub) -> None:
    await upsert(operator, customer("a", "0712345678"))

    reply = await operator.GetCustomer(user_pb2.GetCustomerRequest(customer_id=1))

    assert reply.customer.phone_number_masked == "+2547******78"
    assert b"712345678" not in reply.SerializeToString()


async def test_get_customer_unknown_id_not_found(operator: Stub) -> None:
    error = await rpc_error(
        operator.GetCustomer(user_pb2.GetCustomerRequest(customer_id=7))
    )
    assert error.code() is grpc.StatusCode.NOT_FOUND
    assert "customer 7 does not exist" in (error.details() or "")


async def test_get_customer_rejects_zero_id(operator: Stub) -> None:
    error = await rpc_error(operator.GetCustomer(user_pb2.GetCustomerRequest()))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert (error.details() or "").startswith("customer_id: ")


@pytest.mark.parametrize("caller", ["operator", "envoy", "stranger"])
async def test_get_contacts_denied_outside_comms(
    connect: StubFactory, operator: Stub, caller: str
) -> None:
    await upsert(operator, customer("a"))
    await operator.RecordConsents(user_pb2.RecordConsentsRequest(consents=[consent(1)]))
    stub = connect(caller)

    error = await rpc_error(
        stub.GetContacts(
            user_pb2.GetContactsRequest(
                customer_ids=[1], channel=SMS, purpose=MARKETING
            )
        )
    )

    assert error.code() is grpc.StatusCode.PERMISSION_DENIED


async def test_worker_may_get_contacts(connect: StubFactory, operator: Stub) -> None:
    await upsert(operator, customer("a"))
    await operator.RecordConsents(user_pb2.RecordConsentsRequest(consents=[consent(1)]))
    worker = connect("worker")

    reply = await worker.GetContacts(
        user_pb2.GetContactsRequest(customer_ids=[1], channel=SMS, purpose=MARKETING)
    )

    assert [contact.customer_id for contact in reply.contacts] == [1]


async def test_paging_returns_each_customer_once(operator: Stub) -> None:
    await upsert(
        operator, *[customer(f"c-{n:02d}", f"07120000{n:02d}") for n in range(25)]
    )

    seen: list[int] = []
    token = ""
    pages = 0
    while True:
        reply = await operator.ListCustomers(
            user_pb2.ListCustomersRequest(page_size=7, page_token=token)
        )
        seen.extend(item.customer_id for item in reply.customers)
        pages += 1
        token = reply.next_page_token
        if not token:
            break

    assert pages == 4
    assert seen == list(range(1, 26))


async def test_list_customers_filters_by_prefix(operator: Stub) -> None:
    await upsert(
        operator,
        customer("rider-1"),
        customer("driver-1"),
        customer("rider-2"),
        customer("rider_3"),
    )

    reply = await operator.ListCustomers(
        user_pb2.ListCustomersRequest(query="rider-", page_size=1)
    )
    rest = await operator.ListCustomers(
        user_pb2.ListCustomersRequest(query="rider-", page_token=reply.next_page_token)
    )

    assert [item.external_id for item in reply.customers] == ["rider-1"]
    assert [item.external_id for item in rest.customers] == ["rider-2"]
    assert rest.next_page_token == ""


async def test_list_customers_rejects_foreign_token(operator: Stub) -> None:
    error = await rpc_error(
        operator.ListCustomers(user_pb2.ListCustomersRequest(page_token="not-a-token"))
    )
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert (error.details() or "").startswith("page_token: ")


async def test_phone_and_name_not_stored_in_plaintext(
    operator: Stub, user_settings: UserSettings
) -> None:
    await upsert(operator, customer("a", "0712345678", first_name="Wanjiru"))

    engine = sa.create_engine(user_settings.database_url)
    try:
        with engine.connect() as conn:
            row = conn.execute(sa.text("SELECT * FROM customers")).mappings().one()
    finally:
        engine.dispose()

    stored = b"".join(
        value if isinstance(value, bytes) else str(value).encode()
        for value in row.values()
    )
    assert b"712345678" not in stored
    assert b"Wanjiru" not in stored
    assert isinstance(row["phone_encrypted"], bytes)
    assert len(row["phone_hash"]) == 32


async def test_batch_of_1000_upserts_in_one_call(operator: Stub) -> None:
    inputs = [customer(f"bulk-{n:04d}", f"0712{n:06d}") for n in range(1000)]

    reply = await upsert(operator, *inputs)
    again = await upsert(operator, *inputs)

    assert list(reply.customer_ids) == list(range(1, 1001))
    assert reply.created_count == 1000
    assert list(again.customer_ids) == list(range(1, 1001))
    assert again.created_count == 0


async def test_batch_of_1001_upserts_rejected(operator: Stub) -> None:
    inputs = [customer(f"bulk-{n:04d}", f"0712{n:06d}") for n in range(1001)]
    error = await rpc_error(upsert(operator, *inputs))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert (error.details() or "").startswith("customers: has 1001 items")


async def test_stats_count_customers_consent_and_opt_outs(
    operator: Stub, comms: Stub
) -> None:
    await upsert(
        operator,
        customer("a", "0712000001"),
        customer("b", "0712000002"),
        customer("c", "0712000003"),
    )
    await operator.RecordConsents(
        user_pb2.RecordConsentsRequest(consents=[consent(1), consent(2)])
    )
    await comms.RecordOptOut(
        user_pb2.RecordOptOutRequest(
            phone_number="0712000002", source=user_pb2.CONSENT_SOURCE_SMS_KEYWORD
        )
    )

    stats = await operator.GetCustomerStats(user_pb2.GetCustomerStatsRequest())

    assert stats.customer_count == 3
    assert stats.marketing_sms_consent_count == 1
    assert stats.opted_out_count == 1


async def test_export_rpcs_are_unimplemented(operator: Stub) -> None:
    request = user_pb2.ExportCustomerDataRequest(customer_id=1)
    error = await rpc_error(operator.ExportCustomerData(request))
    assert error.code() is grpc.StatusCode.UNIMPLEMENTED
