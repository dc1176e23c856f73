"""Queries on partner API keys."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from retain_runtime import db
from sqlalchemy.ext.asyncio import AsyncEngine

from retain_user.admin_store import write_audit
from retain_user.audit import AuditEntry
from retain_user.tables import api_keys


class ApiKeyStore:
    """API keys with their secret hashes."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._sessions = db.sessionmaker(engine)

    async def insert(self, row: Mapping[str, Any], audit: AuditEntry) -> sa.Row[Any]:
        insert = sa.insert(api_keys).values(dict(row)).returning(*api_keys.c)
        async with self._sessions.begin() as session:
            created = (await session.execute(insert)).one()
            await write_audit(session, audit)
        return created

    async def get(self, api_key_id: str) -> sa.Row[Any] | None:
        query = sa.select(api_keys).where(api_keys.c.api_key_id == api_key_id)
        async with self._sessions() as session:
            return (await session.execute(query)).first()

    async def list(self, after: int, limit: int) -> Sequence[sa.Row[Any]]:
        """Return up to limit keys with list_position above after, in order."""
        query = (
            sa.select(api_keys)
            .where(api_keys.c.list_position > after)
            .order_by(api_keys.c.list_position)
            .limit(limit)
        )
        async with self._sessions() as session:
            return (await session.execute(query)).all()

    async def revoke(
        self, api_key_id: str, now: dt.datetime, audit: AuditEntry
    ) -> sa.Row[Any] | None:
        """Set revoke_time unless set; returns the key, or None if unknown."""
        revoke = (
            sa.update(api_keys)
            .where(api_keys.c.api_key_id == api_key_id)
            .where(api_keys.c.revoke_time.is_(None))
            .values(revoke_time=now)
            .returning(*api_keys.c)
        )
        async with self._sessions.begin() as session:
            revoked = (await session.execute(revoke)).first()
            if revoked is not None:
                await write_audit(session, audit)
                return revoked
        return await self.get(api_key_id)
