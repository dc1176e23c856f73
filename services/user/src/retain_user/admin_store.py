"""Queries on admin accounts, failed sign-ins and the audit log.

Each method runs in one transaction and writes its audit entry, if it has
one, in that same transaction.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from retain_runtime import db
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from retain_user.audit import AuditEntry
from retain_user.tables import admins, audit_events, sign_in_failures

# Admin columns plus the lockout time, for Admin messages.
_ADMIN_COLUMNS = (*admins.c, sign_in_failures.c.locked_until_time)
_ADMINS_WITH_LOCKS = admins.outerjoin(
    sign_in_failures, sign_in_failures.c.email == admins.c.email
)


async def write_audit(session: AsyncSession, entry: AuditEntry) -> None:
    """Insert an audit row in the caller's transaction."""
    await session.execute(sa.insert(audit_events).values(entry.row()))


class AdminStore:
    """Admin accounts, their failed sign-ins and the audit log."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._sessions = db.sessionmaker(engine)

    async def insert_admin(
        self, row: Mapping[str, Any], audit: AuditEntry
    ) -> sa.Row[Any] | None:
        """Insert an admin; returns None when the email is taken."""
        insert = (
            pg.insert(admins)
            .values(dict(row))
            .on_conflict_do_nothing(index_elements=[admins.c.email])
            .returning(*admins.c)
        )
        async with self._sessions.begin() as session:
            created = (await session.execute(insert)).first()
            if created is not None:
                await write_audit(session, audit)
            return created

    async def admin_by_email(self, email: str) -> sa.Row[Any] | None:
        query = (
            sa.select(*_ADMIN_COLUMNS)
            .select_from(_ADMINS_WITH_LOCKS)
            .where(admins.c.email == email)
        )
        async with self._sessions() as session:
            return (await session.execute(query)).first()

    async def list_admins(self, after: int, limit: int) -> Sequence[sa.Row[Any]]:
        """Return up to limit admins with ids above after, in id order."""
        query = (
            sa.select(*_ADMIN_COLUMNS)
            .select_from(_ADMINS_WITH_LOCKS)
            .where(admins.c.admin_id > after)
            .order_by(admins.c.admin_id)
            .limit(limit)
        )
        async with self._sessions() as session:
            return (await session.execute(query)).all()

    async def update_password_hash(self, admin_id: int, password_hash: str) -> None:
        update = (
            sa.update(admins)
            .where(admins.c.admin_id == admin_id)
            .values(password_hash=password_hash)
        )
        async with self._sessions.begin() as session:
            await session.execute(update)

    async def locked_until(self, email: str) -> dt.datetime | None:
        query = sa.select(sign_in_failures.c.locked_until_time).where(
            sign_in_failures.c.email == email
        )
        async with self._sessions() as session:
            locked: dt.datetime | None = await session.scalar(query)
            return locked

    async def record_failure(
        self, email: str, window_start: dt.datetime, audit: AuditEntry
    ) -> int:
        """Count a failed sign-in at audit.occur_time; returns the failures
        after window_start, this one included."""
        parameters = {
            "email": email,
            "now": audit.occur_time,
            "window_start": window_start,
        }
        async with self._sessions.begin() as session:
            count = await session.scalar(_RECORD_FAILURE, parameters)
            await write_audit(session, audit)
        return int(count or 0)

    async def lock(self, email: str, until: dt.datetime, audit: AuditEntry) -> None:
        """Lock an email until a time and clear its counted failures."""
        update = (
            sa.update(sign_in_failures)
            .where(sign_in_failures.c.email == email)
            .values(failure_times=[], locked_until_time=until)
        )
        async with self._sessions.begin() as session:
            await session.execute(update)
            await write_audit(session, audit)

    async def record_success(self, email: str, audit: AuditEntry) -> None:
        """Clear an email's failed sign-ins and audit the sign-in."""
        delete = sa.delete(sign_in_failures).where(sign_in_failures.c.email == email)
        async with self._sessions.begin() as session:
            await session.execute(delete)
            await write_audit(session, audit)


# Append a failure and drop those at or before the window start, in one
# statement, so concurrent failures are all counted.
_RECORD_FAILURE = sa.text(
    """
    INSERT INTO sign_in_failures (email, failure_times, locked_until_time)
    VALUES (:email, ARRAY[CAST(:now AS timestamptz)], NULL)
    ON CONFLICT (email) DO UPDATE SET failure_times = ARRAY(
        SELECT failure_time
        FROM unnest(sign_in_failures.failure_times) AS failure_time
        WHERE failure_time > :window_start
    ) || CAST(:now AS timestamptz)
    RETURNING cardinality(failure_times)
    """
)
