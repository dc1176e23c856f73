"""Request builders and error capture shared by the user service tests."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import grpc
import pytest
from retain.type.v1 import channel_pb2
from retain.user.v1 import user_pb2, user_pb2_grpc

# Opens a client with the certificate of the named mesh member.
StubFactory = Callable[[str], user_pb2_grpc.UserServiceStub]

SMS = channel_pb2.CHANNEL_SMS
MARKETING = channel_pb2.PURPOSE_MARKETING
SERVICE = channel_pb2.PURPOSE_SERVICE
API = user_pb2.CONSENT_SOURCE_API
SMS_KEYWORD = user_pb2.CONSENT_SOURCE_SMS_KEYWORD


def customer(
    external_id: str, phone_number: str = "0712345678", first_name: str = ""
) -> user_pb2.CustomerInput:
    return user_pb2.CustomerInput(
        external_id=external_id, phone_number=phone_number, first_name=first_name
    )


def consent(
    customer_id: int,
    granted: bool = True,
    channel: int = SMS,
    purpose: int = MARKETING,
) -> user_pb2.ConsentInput:
    return user_pb2.ConsentInput(
        customer_id=customer_id,
        channel=channel,
        purpose=purpose,
        granted=granted,
        source=API,
        notice_version="2024-01",
        evidence="signup form",
    )


def check_request(
    customer_ids: list[int], purpose: int = MARKETING
) -> user_pb2.CheckConsentsRequest:
    return user_pb2.CheckConsentsRequest(
        customer_ids=customer_ids, channel=SMS, purpose=purpose
    )


async def rpc_error(call: Awaitable[object]) -> grpc.aio.AioRpcError:
    """Await a call that must fail and return its error."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value
