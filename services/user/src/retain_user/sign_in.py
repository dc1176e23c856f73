"""Email and password checks with lockout after repeated failures.

A wrong email and a wrong password fail with the same error and take the
same time, because an unknown email is verified against a stand-in hash.
Failures are counted per email, known or not: after MAX_FAILURES within
FAILURE_WINDOW the email is locked for LOCK_DURATION, even for the right
password, and a successful sign-in clears earlier failures. Times come from
the service clock.
"""

from __future__ import annotations

import datetime as dt
import logging

from retain_runtime.clock import Clock
from retain_runtime.errors import ResourceExhausted, Unauthenticated

from retain_user.admin_store import AdminStore
from retain_user.admins import Admin, AdminDirectory, normalise_email
from retain_user.audit import AuditAction, audit_entry
from retain_user.passwords import Passwords

log = logging.getLogger(__name__)

MAX_FAILURES = 5
FAILURE_WINDOW = dt.timedelta(minutes=15)
LOCK_DURATION = dt.timedelta(minutes=15)

# One message for a wrong email and a wrong password, so that sign-in does
# not reveal which emails have accounts.
WRONG_CREDENTIALS = "the email or password is incorrect; check both and try again"


class SignInChecker:
    """Checks credentials, counts failures and locks emails."""

    def __init__(
        self,
        store: AdminStore,
        directory: AdminDirectory,
        passwords: Passwords,
        clock: Clock,
    ) -> None:
        self._store = store
        self._directory = directory
        self._passwords = passwords
        self._clock = clock

    async def authenticate(self, raw_email: str, password: str) -> Admin:
        """Return the account that email and password identify.

        Raises ResourceExhausted while the email is locked, else
        Unauthenticated when either is wrong.
        """
        email = normalise_email(raw_email)
        now = self._clock.now()
        locked_until = await self._store.locked_until(email)
        if locked_until is not None and locked_until > now:
            raise ResourceExhausted(
                f"account locked until {locked_until.isoformat()} after "
                f"{MAX_FAILURES} failed sign-ins; try again after that time"
            )

        row = await self._store.admin_by_email(email)
        password_hash = row.password_hash if row is not None else None
        verified = await self._passwords.verify(password_hash, password)
        if row is None or not verified:
            await self._record_failure(email, now, row is not None)
            raise Unauthenticated(WRONG_CREDENTIALS)

        await self._store.record_success(
            email, audit_entry(AuditAction.SIGN_IN, email, now)
        )
        if self._passwords.needs_rehash(row.password_hash):
            rehashed = await self._passwords.hash(password)
            await self._store.update_password_hash(row.admin_id, rehashed)
            log.info("Rehashed the password of admin %d", row.admin_id)
        log.info("Admin %d signed in", row.admin_id)
        return self._directory.admin(row)

    async def _record_failure(self, email: str, now: dt.datetime, known: bool) -> None:
        audit = audit_entry(AuditAction.SIGN_IN_FAILED, email, now)
        failures = await self._store.record_failure(email, now - FAILURE_WINDOW, audit)
        log.info(
            "Sign-in failed for %s; %d of the %d failures that lock it",
            "an existing account" if known else "an email without an account",
            failures,
            MAX_FAILURES,
        )
        if failures < MAX_FAILURES:
            return
        until = now + LOCK_DURATION
        locked = audit_entry(AuditAction.ACCOUNT_LOCKED, email, now)
        await self._store.lock(email, until, locked)
        log.warning("Locked sign-in for an email until %s", until.isoformat())
