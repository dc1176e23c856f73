"""Queries on signing keys, sign-in sessions and refresh tokens."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from retain_runtime import db
from sqlalchemy.ext.asyncio import AsyncEngine

from retain_user.admin_store import write_audit
from retain_user.audit import AuditEntry
from retain_user.tables import admin_sessions, admins, refresh_tokens, signing_keys

# Advisory lock key that serialises key rotation across replicas: the first
# eight bytes of "sign_key" read as a big-endian integer.
_ROTATION_LOCK = int.from_bytes(b"sign_key", "big")


class TokenStore:
    """Signing keys, sessions and the refresh tokens of each session."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._sessions = db.sessionmaker(engine)

    async def newest_signing_keys(self, limit: int) -> Sequence[sa.Row[Any]]:
        query = (
            sa.select(signing_keys)
            .order_by(signing_keys.c.create_time.desc(), signing_keys.c.kid)
            .limit(limit)
        )
        async with self._sessions() as session:
            return (await session.execute(query)).all()

    async def insert_signing_key(
        self, row: Mapping[str, Any], stale_before: dt.datetime
    ) -> bool:
        """Insert a key unless one created after stale_before exists.

        Returns whether the key was inserted; one of several replicas that
        rotate at once wins.
        """
        newest = sa.select(sa.func.max(signing_keys.c.create_time))
        async with self._sessions.begin() as session:
            await session.execute(
                sa.select(sa.func.pg_advisory_xact_lock(_ROTATION_LOCK))
            )
            newest_time = await session.scalar(newest)
            if newest_time is not None and newest_time > stale_before:
                return False
            await session.execute(sa.insert(signing_keys).values(dict(row)))
        return True

    async def start_session(
        self, session_row: Mapping[str, Any], token_row: Mapping[str, Any]
    ) -> None:
        async with self._sessions.begin() as session:
            await session.execute(sa.insert(admin_sessions).values(dict(session_row)))
            await session.execute(sa.insert(refresh_tokens).values(dict(token_row)))

    async def refresh_token(self, token_hash: bytes) -> sa.Row[Any] | None:
        """Return a refresh token with its session and admin, or None."""
        query = (
            sa.select(
                refresh_tokens,
                admin_sessions.c.revoke_time,
                admins.c.admin_id,
                admins.c.email,
                admins.c.role,
            )
            .select_from(
                refresh_tokens.join(admin_sessions).join(
                    admins, admins.c.admin_id == admin_sessions.c.admin_id
                )
            )
            .where(refresh_tokens.c.token_hash == token_hash)
        )
        async with self._sessions() as session:
            return (await session.execute(query)).first()

    async def rotate_refresh_token(
        self, token_hash: bytes, next_row: Mapping[str, Any]
    ) -> bool:
        """Mark a token used and store the next token of its session.

        Returns False, storing nothing, when the token was already used,
        such as by a concurrent refresh.
        """
        used = (
            sa.update(refresh_tokens)
            .where(refresh_tokens.c.token_hash == token_hash)
            .where(refresh_tokens.c.rotate_time.is_(None))
            .values(rotate_time=next_row["create_time"])
            .returning(refresh_tokens.c.session_id)
        )
        async with self._sessions.begin() as session:
            if await session.scalar(used) is None:
                return False
            await session.execute(sa.insert(refresh_tokens).values(dict(next_row)))
        return True

    async def revoke_session(
        self, session_id: str, reason: str, audit: AuditEntry
    ) -> None:
        """Revoke a session at audit.occur_time unless it is already revoked."""
        update = (
            sa.update(admin_sessions)
            .where(admin_sessions.c.session_id == session_id)
            .where(admin_sessions.c.revoke_time.is_(None))
            .values(revoke_time=audit.occur_time, revoke_reason=reason)
        )
        async with self._sessions.begin() as session:
            await session.execute(update)
            await write_audit(session, audit)

    async def session_revoked(self, session_id: str) -> bool:
        """Return whether a session is revoked; an unknown session counts as revoked."""
        query = sa.select(admin_sessions.c.revoke_time).where(
            admin_sessions.c.session_id == session_id
        )
        async with self._sessions() as session:
            row = (await session.execute(query)).first()
        return row is None or row.revoke_time is not None
