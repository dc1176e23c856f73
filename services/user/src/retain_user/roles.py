"""Admin roles: their names in tokens and metadata, and the role checks.

Envoy verifies an admin's access token and forwards its "role" claim as
x-retain-role metadata, which retain_runtime.callers trusts only from Envoy.
The operator identity is the `retain` CLI of the person running the stack,
so it passes every role check, and `retain up` creates the first admin with it.
"""

from __future__ import annotations

from collections.abc import Collection

from retain.user.v1 import user_pb2
from retain_runtime.callers import current_caller
from retain_runtime.errors import PermissionDenied

ADMIN = "admin"
ANALYST = "analyst"

# The "role" claim of access tokens, by user.v1.Role number.
ROLE_NAMES = {user_pb2.ROLE_ADMIN: ADMIN, user_pb2.ROLE_ANALYST: ANALYST}

ANY_ROLE = (ADMIN, ANALYST)


def require_role(method: str, allowed: Collection[str]) -> None:
    """Raise PermissionDenied unless the operator calls, or Envoy on behalf
    of an admin whose role is in allowed."""
    caller = current_caller.get()
    if caller is not None and caller.name == "operator":
        return
    if caller is not None and caller.name == "envoy" and caller.role in allowed:
        return
    role = caller.role if caller is not None and caller.role else "no role"
    raise PermissionDenied(
        f"{method} needs the role {' or '.join(allowed)}, and the caller has "
        f"{role}; sign in with an account that has it"
    )
