"""Admin and analyst accounts of the dashboard: creation and listing.

Emails are normalised (trimmed, lowercase) before they are stored or looked
up, so one address has one account whatever its case. Passwords are stored
only as argon2id hashes.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from retain.user.v1 import user_pb2
from retain_runtime.clock import Clock
from retain_runtime.errors import AlreadyExists, InvalidArgument, NotFound
from retain_runtime.logs import mask_phone
from retain_runtime.phone import normalise_phone

from retain_user import roles
from retain_user.admin_store import AdminStore
from retain_user.audit import AuditAction, audit_entry
from retain_user.crypto import DataCipher
from retain_user.passwords import Passwords

log = logging.getLogger(__name__)

MAX_EMAIL = 254  # RFC 5321 limit on a forward path, less the angle brackets
# One "@", no whitespace, and a dot in the domain; deliverability is not checked.
_EMAIL_PATTERN = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]+")


def normalise_email(raw: str, field: str = "email") -> str:
    """Return the trimmed, lowercase email, or raise InvalidArgument."""
    email = raw.strip().lower()
    if not email:
        raise InvalidArgument(field, "is empty; send the account's email address")
    if len(email) > MAX_EMAIL or not _EMAIL_PATTERN.fullmatch(email):
        raise InvalidArgument(
            field, "is not an email address; send one like name@example.com"
        )
    return email


@dataclass(frozen=True)
class Admin:
    """An account as callers see it, without its password hash."""

    admin_id: int
    email: str
    role: int
    phone_number_masked: str
    create_time: dt.datetime
    # locked_until_time is set while failed sign-ins lock the account.
    locked_until_time: dt.datetime | None

    @property
    def role_name(self) -> str:
        return roles.ROLE_NAMES[self.role]


@dataclass(frozen=True)
class AdminContact:
    """An admin's own phone number, for the test messages sent to it."""

    admin_id: int
    email: str
    # phone_number is in E.164, or empty when the account has none.
    phone_number: str


class AdminDirectory:
    """Creates and lists admin accounts and reads an admin's phone number."""

    def __init__(
        self, store: AdminStore, cipher: DataCipher, passwords: Passwords, clock: Clock
    ) -> None:
        self._store = store
        self._cipher = cipher
        self._passwords = passwords
        self._clock = clock

    async def create(self, request: user_pb2.CreateAdminRequest) -> Admin:
        """Create an account; only admins and the operator may."""
        roles.require_role("CreateAdmin", [roles.ADMIN])
        email = normalise_email(request.email)
        now = self._clock.now()
        row = {
            "email": email,
            "password_hash": await self._passwords.hash(request.password),
            "role": request.role,
            "phone_encrypted": self._phone_encrypted(request.phone_number),
            "create_time": now,
        }
        audit = audit_entry(AuditAction.CREATE_ADMIN, email, now)
        created = await self._store.insert_admin(row, audit)
        if created is None:
            raise AlreadyExists(
                "email: an account with this email exists; sign in with it or "
                "choose another email"
            )
        role = roles.ROLE_NAMES[request.role]
        log.info("Created admin %d with role %s", created.admin_id, role)
        return self.admin(created)

    async def page(self, after: int, limit: int) -> list[Admin]:
        """Return up to limit accounts with ids above after; only admins may."""
        roles.require_role("ListAdmins", [roles.ADMIN])
        rows = await self._store.list_admins(after, limit)
        return [self.admin(row) for row in rows]

    async def contact(self, email: str) -> AdminContact:
        """Return an admin's full phone number; raise NotFound for an unknown email."""
        normalised = normalise_email(email)
        row = await self._store.admin_by_email(normalised)
        if row is None:
            raise NotFound(
                "email: no admin account has this email; sign in with an "
                "existing account"
            )
        phone = ""
        if row.phone_encrypted is not None:
            phone = self._cipher.decrypt(row.phone_encrypted)
        log.info("Handing out the phone number of admin %d", row.admin_id)
        return AdminContact(row.admin_id, normalised, phone)

    def admin(self, row: sa.Row[Any]) -> Admin:
        """Build an Admin from a row of admins joined with its lockout."""
        locked = getattr(row, "locked_until_time", None)
        if locked is not None and locked <= self._clock.now():
            locked = None
        phone = ""
        if row.phone_encrypted is not None:
            phone = mask_phone(self._cipher.decrypt(row.phone_encrypted))
        return Admin(
            admin_id=row.admin_id,
            email=row.email,
            role=row.role,
            phone_number_masked=phone,
            create_time=row.create_time,
            locked_until_time=locked,
        )

    def _phone_encrypted(self, phone_number: str) -> bytes | None:
        if not phone_number:
            return None
        return self._cipher.encrypt(normalise_phone(phone_number, "phone_number"))
