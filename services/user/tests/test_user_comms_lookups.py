"""GetAdminContact and LookupPhoneNumber: the numbers comms reads for test
messages, USSD surveys and voice calls, and who else may not read them."""

from __future__ import annotations

import grpc
import pytest
from retain.user.v1 import user_pb2, user_pb2_grpc
from user_helpers import StubFactory, customer, rpc_error

Stub = user_pb2_grpc.UserServiceStub

PASSWORD = "correct horse battery"


async def create_admin(operator: Stub, email: str, phone_number: str = "") -> int:
    request = user_pb2.CreateAdminRequest(
        email=email,
        password=PASSWORD,
        role=user_pb2.ROLE_ADMIN,
        phone_number=phone_number,
    )
    return (await operator.CreateAdmin(request)).admin.admin_id


async def test_admin_contact_returns_full_phone(operator: Stub, comms: Stub) -> None:
    admin_id = await create_admin(operator, "ann@example.com", "0712 345 678")

    reply = await comms.GetAdminContact(
        user_pb2.GetAdminContactRequest(email="  Ann@Example.com ")
    )

    assert reply.admin_id == admin_id
    assert reply.email == "ann@example.com"
    assert reply.phone_number == "+254712345678"


async def test_admin_contact_without_phone_is_empty(
    operator: Stub, comms: Stub
) -> None:
    await create_admin(operator, "bob@example.com")

    reply = await comms.GetAdminContact(
        user_pb2.GetAdminContactRequest(email="bob@example.com")
    )

    assert reply.phone_number == ""


async def test_admin_contact_of_unknown_email_not_found(comms: Stub) -> None:
    error = await rpc_error(
        comms.GetAdminContact(
            user_pb2.GetAdminContactRequest(email="nobody@example.com")
        )
    )

    assert error.code() is grpc.StatusCode.NOT_FOUND
    assert "email" in (error.details() or "")


async def test_admin_contact_rejects_invalid_email(comms: Stub) -> None:
    error = await rpc_error(
        comms.GetAdminContact(user_pb2.GetAdminContactRequest(email="not-an-email"))
    )

    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "email" in (error.details() or "")


async def test_lookup_returns_customers_sharing_number(
    operator: Stub, comms: Stub
) -> None:
    shared = "0712345678"
    await operator.UpsertCustomers(
        user_pb2.UpsertCustomersRequest(
            customers=[
                customer("a", shared),
                user_pb2.CustomerInput(
                    external_id="b",
                    phone_number="+254712345678",
                    language=user_pb2.LANGUAGE_SW,
                    vertical=user_pb2.VERTICAL_HEALTH,
                    fictitious=True,
                ),
                customer("c", "0722000000"),
            ]
        )
    )

    reply = await comms.LookupPhoneNumber(
        user_pb2.LookupPhoneNumberRequest(phone_number="254 712 345 678")
    )

    assert [c.customer_id for c in reply.customers] == [1, 2]
    first, second = reply.customers
    assert first.language == user_pb2.LANGUAGE_EN
    assert not first.fictitious
    assert second.language == user_pb2.LANGUAGE_SW
    assert second.vertical == user_pb2.VERTICAL_HEALTH
    assert second.fictitious


async def test_lookup_of_unknown_number_is_empty(comms: Stub) -> None:
    reply = await comms.LookupPhoneNumber(
        user_pb2.LookupPhoneNumberRequest(phone_number="0799000000")
    )

    assert list(reply.customers) == []


async def test_lookup_rejects_invalid_number(comms: Stub) -> None:
    error = await rpc_error(
        comms.LookupPhoneNumber(user_pb2.LookupPhoneNumberRequest(phone_number="12"))
    )

    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "phone_number" in (error.details() or "")


@pytest.mark.parametrize("caller", ["operator", "envoy", "worker", "events"])
async def test_only_comms_reads_numbers(connect: StubFactory, caller: str) -> None:
    stub = connect(caller)

    contact = await rpc_error(
        stub.GetAdminContact(user_pb2.GetAdminContactRequest(email="a@example.com"))
    )
    lookup = await rpc_error(
        stub.LookupPhoneNumber(
            user_pb2.LookupPhoneNumberRequest(phone_number="0712345678")
        )
    )

    assert contact.code() is grpc.StatusCode.PERMISSION_DENIED
    assert lookup.code() is grpc.StatusCode.PERMISSION_DENIED
