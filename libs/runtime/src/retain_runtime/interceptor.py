"""The one server interceptor: caller check, request validation, error mapping.

For every RPC it checks the peer's mesh identity against the service's
CallPolicy, runs the method's validator on each request message, and turns a
RetainError raised anywhere below into its gRPC status. Any other exception
becomes INTERNAL with a fixed message. Servicers therefore hold only domain
calls.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import grpc

from retain_runtime.callers import CallPolicy, Caller, caller_of, current_caller
from retain_runtime.errors import InvalidArgument, RetainError

log = logging.getLogger(__name__)

Validator = Callable[[Any], None]


class ServiceInterceptor(grpc.aio.ServerInterceptor):
    """Wraps every handler of one service with the checks above."""

    def __init__(
        self, policy: CallPolicy, validators: Mapping[str, Validator] | None = None
    ) -> None:
        self.policy = policy
        # Validators are keyed by method name without the service, e.g. "GetJob".
        self.validators = dict(validators or {})

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None:
            return None
        method = details.method
        validator = self.validators.get(method.rsplit("/", 1)[-1])
        return _wrap(handler, method, self.policy, validator)


async def _admit(
    context: grpc.aio.ServicerContext, method: str, policy: CallPolicy
) -> Caller:
    caller = caller_of(context)
    if not policy.allows(method, caller.identity):
        log.warning(
            "Denied %s to caller %s", method, caller.identity or "without identity"
        )
        await context.abort(
            grpc.StatusCode.PERMISSION_DENIED,
            f"{caller.identity or 'a caller without a mesh identity'} "
            f"may not call {method}",
        )
    current_caller.set(caller)
    return caller


async def _fail(context: grpc.aio.ServicerContext, method: str, error: RetainError) -> None:
    if error.code is grpc.StatusCode.INTERNAL:
        log.exception("Internal error in %s", method)
    elif isinstance(error, InvalidArgument):
        # The message may quote personal data such as a phone number, so the
        # log names only the field.
        log.info("%s rejected an invalid %s", method, error.field)
    else:
        log.info("%s failed with %s: %s", method, error.code.name, error)
    await context.abort(error.code, str(error))


async def _fail_unexpected(
    context: grpc.aio.ServicerContext, method: str, error: Exception
) -> None:
    if isinstance(error, NotImplementedError):
        # The generated servicer base class raises NotImplementedError for
        # methods that have no implementation.
        log.info("%s is not implemented", method)
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{method} is not implemented")
    # The exception's text may quote SQL with its parameters or personal data,
    # so it goes to the server log only, and the caller gets a fixed message.
    log.exception("Unexpected error in %s", method)
    await context.abort(
        grpc.StatusCode.INTERNAL, "internal error; the server log has the details"
    )


@asynccontextmanager
async def _statuses(context: grpc.aio.ServicerContext, method: str) -> AsyncIterator[None]:
    """Turn an exception of the handler into the gRPC status the caller receives."""
    try:
        yield
    except RetainError as error:
        await _fail(context, method, error)
    except grpc.aio.AbortError:
        raise
    except Exception as error:  # noqa: BLE001 - any other error becomes INTERNAL
        await _fail_unexpected(context, method, error)


def _wrap(
    handler: grpc.RpcMethodHandler,
    method: str,
    policy: CallPolicy,
    validator: Validator | None,
) -> grpc.RpcMethodHandler:
    def check(request: Any) -> Any:
        if validator is not None:
            validator(request)
        return request

    async def checked_stream(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
        async for request in requests:
            yield check(request)

    if handler.unary_unary:
        inner_uu = handler.unary_unary

        async def unary_unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            await _admit(context, method, policy)
            async with _statuses(context, method):
                return await inner_uu(check(request), context)

        return grpc.unary_unary_rpc_method_handler(
            unary_unary, handler.request_deserializer, handler.response_serializer
        )

    if handler.unary_stream:
        inner_us = handler.unary_stream

        async def unary_stream(
            request: Any, context: grpc.aio.ServicerContext
        ) -> AsyncIterator[Any]:
            await _admit(context, method, policy)
            async with _statuses(context, method):
                async for reply in inner_us(check(request), context):
                    yield reply

        return grpc.unary_stream_rpc_method_handler(
            unary_stream, handler.request_deserializer, handler.response_serializer
        )

    if handler.stream_unary:
        inner_su = handler.stream_unary

        async def stream_unary(
            requests: AsyncIterator[Any], context: grpc.aio.ServicerContext
        ) -> Any:
            await _admit(context, method, policy)
            async with _statuses(context, method):
                return await inner_su(checked_stream(requests), context)

        return grpc.stream_unary_rpc_method_handler(
            stream_unary, handler.request_deserializer, handler.response_serializer
        )

    inner_ss = handler.stream_stream

    async def stream_stream(
        requests: AsyncIterator[Any], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[Any]:
        await _admit(context, method, policy)
        async with _statuses(context, method):
            async for reply in inner_ss(checked_stream(requests), context):
                yield reply

    return grpc.stream_stream_rpc_method_handler(
        stream_stream, handler.request_deserializer, handler.response_serializer
    )
