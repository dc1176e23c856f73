"""The first admin accounts of a local stack, so someone can sign in.

`retain up` and `retain demo` create admin@retain.local and, so that
two-person campaign approval can be tried, approver@retain.local. Each gets
a random password saved next to the stack's state with mode 0600. An email
that already has an account is left alone, so running either command again
changes nothing.
"""

from __future__ import annotations

import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import grpc
from retain.user.v1 import user_pb2, user_pb2_grpc

log = logging.getLogger(__name__)

# Email and the file under the state folder that contains its password.
FIRST_ADMINS = (
    ("admin@retain.local", "admin-password"),
    ("approver@retain.local", "approver-password"),
)

# 18 random bytes give a 24-character password, over the 12-character minimum.
PASSWORD_BYTES = 18
RPC_TIMEOUT_SECONDS = 30


@dataclass(frozen=True)
class AdminAccount:
    """A first admin account and where its password is saved."""

    email: str
    password_path: Path
    created: bool

    @property
    def password_saved(self) -> bool:
        return self.password_path.is_file()


def ensure_first_admins(
    user: user_pb2_grpc.UserServiceStub, state_dir: Path
) -> list[AdminAccount]:
    """Create each first admin account that does not exist yet.

    user must call as "operator", which may create admins without signing in.
    """
    existing = _admin_emails(user)
    accounts = []
    for email, filename in FIRST_ADMINS:
        path = state_dir / filename
        created = email not in existing and _create(user, email, path)
        accounts.append(AdminAccount(email, path, created))
    return accounts


def _admin_emails(user: user_pb2_grpc.UserServiceStub) -> set[str]:
    emails: set[str] = set()
    token = ""
    while True:
        reply = user.ListAdmins(
            user_pb2.ListAdminsRequest(page_size=100, page_token=token),
            timeout=RPC_TIMEOUT_SECONDS,
        )
        emails.update(admin.email for admin in reply.admins)
        token = reply.next_page_token
        if not token:
            return emails


def _create(user: user_pb2_grpc.UserServiceStub, email: str, path: Path) -> bool:
    """Create one admin; return False if another process created it first."""
    password = secrets.token_urlsafe(PASSWORD_BYTES)
    # The password is saved before the account exists, so a crash cannot
    # lose it, and moves into place once the account exists.
    pending = path.with_name(path.name + ".pending")
    _write_private(pending, password + "\n")
    request = user_pb2.CreateAdminRequest(
        email=email, password=password, role=user_pb2.ROLE_ADMIN
    )
    try:
        user.CreateAdmin(request, timeout=RPC_TIMEOUT_SECONDS)
    except grpc.RpcError as error:
        if not isinstance(error, grpc.Call):
            raise
        if error.code() is not grpc.StatusCode.ALREADY_EXISTS:
            raise
        pending.unlink()
        log.warning("Admin %s was created by another process", email)
        return False
    pending.replace(path)
    log.info("Created admin %s; its password is in %s", email, path)
    return True


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(text)
    # os.open applies the mode only to a new file.
    path.chmod(0o600)
