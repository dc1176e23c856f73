"""The exception tree shared by Retain services.

RetainError
 +-- InvalidArgument     a request field is malformed or out of range
 +-- NotFound            a named record does not exist
 +-- AlreadyExists       a record with the same key exists
 +-- FailedPrecondition  the record is not in a state that allows the call
 +-- Unauthenticated     the caller's credentials are missing or invalid
 +-- PermissionDenied    the caller may not make the call
 +-- ResourceExhausted   a quota or budget is used up
 +-- Unavailable         a dependency is down; the caller may retry
 +-- SettingsError       an environment variable is missing or invalid

The service interceptor maps each class to its gRPC status code, so servicers
raise these and never call ``context.abort`` themselves.
"""

from __future__ import annotations

import grpc


class RetainError(Exception):
    """Base class; raised only through a subclass."""

    code = grpc.StatusCode.INTERNAL


class InvalidArgument(RetainError):
    """Raised when a request field is malformed or out of range."""

    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class NotFound(RetainError):
    """Raised when a record named by the request does not exist."""

    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(RetainError):
    """Raised when a record with the same unique key exists."""

    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(RetainError):
    """Raised when a record's state does not allow the call."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class Unauthenticated(RetainError):
    """Raised when an email and password, or a token, does not authenticate."""

    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(RetainError):
    """Raised when the caller's identity or role may not make the call."""

    code = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhausted(RetainError):
    """Raised when a quota, rate or budget is used up."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(RetainError):
    """Raised when a dependency is down and the call may be retried."""

    code = grpc.StatusCode.UNAVAILABLE


class SettingsError(RetainError):
    """Raised when an environment variable is missing or has a bad value."""

    code = grpc.StatusCode.FAILED_PRECONDITION

    def __init__(self, variable: str, message: str) -> None:
        super().__init__(f"{variable}: {message}")
        self.variable = variable
