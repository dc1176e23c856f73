"""Partner API keys: issue, list, revoke and verify.

A key reads rk_<id>_<secret>: id is 16 hex digits, public and safe to log,
and secret is 32 random bytes in base64url. Retain stores only the SHA-256
hash of the whole key and returns the key once, from CreateApiKey.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from retain_runtime.clock import Clock
from retain_runtime.errors import NotFound

from retain_user import roles
from retain_user.api_key_store import ApiKeyStore
from retain_user.audit import AuditAction, audit_entry, caller_subject

log = logging.getLogger(__name__)

KEY_PREFIX = "rk_"
DEFAULT_REQUESTS_PER_MINUTE = 600
_ID_BYTES = 8
_SECRET_BYTES = 32


@dataclass(frozen=True)
class ApiKey:
    """An API key without its secret."""

    api_key_id: str
    name: str
    requests_per_minute: int
    created_by: str
    create_time: dt.datetime
    revoke_time: dt.datetime | None
    # list_position orders ListApiKeys pages.
    list_position: int


class ApiKeys:
    """Issues, lists, revokes and verifies partner API keys."""

    def __init__(self, store: ApiKeyStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    async def create(self, name: str, requests_per_minute: int) -> tuple[ApiKey, str]:
        """Issue a key; returns it and its full secret, which is never stored."""
        roles.require_role("CreateApiKey", [roles.ADMIN])
        api_key_id = secrets.token_hex(_ID_BYTES)
        secret = f"{KEY_PREFIX}{api_key_id}_{secrets.token_urlsafe(_SECRET_BYTES)}"
        now = self._clock.now()
        row = {
            "api_key_id": api_key_id,
            "secret_hash": _hash(secret),
            "name": name,
            "requests_per_minute": requests_per_minute or DEFAULT_REQUESTS_PER_MINUTE,
            "created_by": caller_subject(),
            "create_time": now,
        }
        audit = audit_entry(AuditAction.CREATE_API_KEY, api_key_id, now)
        created = await self._store.insert(row, audit)
        log.info("Created API key %s for %s", api_key_id, row["created_by"])
        return _api_key(created), secret

    async def page(self, after: int, limit: int) -> list[ApiKey]:
        roles.require_role("ListApiKeys", roles.ANY_ROLE)
        return [_api_key(row) for row in await self._store.list(after, limit)]

    async def revoke(self, api_key_id: str) -> ApiKey:
        """Revoke a key; revoking a revoked key keeps its first revoke_time."""
        roles.require_role("RevokeApiKey", [roles.ADMIN])
        now = self._clock.now()
        audit = audit_entry(AuditAction.REVOKE_API_KEY, api_key_id, now)
        row = await self._store.revoke(api_key_id, now, audit)
        if row is None:
            raise NotFound(
                f"api_key_id: API key {api_key_id} does not exist; "
                "list the keys to find its id"
            )
        log.info("Revoked API key %s", api_key_id)
        return _api_key(row)

    async def verify_api_key(self, secret: str) -> ApiKey | None:
        """Return the live key that secret is, or None when it is not one."""
        api_key_id = _key_id(secret)
        if api_key_id is None:
            return None
        row = await self._store.get(api_key_id)
        if row is None or not hmac.compare_digest(_hash(secret), row.secret_hash):
            return None
        if row.revoke_time is not None:
            return None
        return _api_key(row)


def _key_id(secret: str) -> str | None:
    """Return the id part of rk_<id>_<secret>, or None if malformed."""
    if not secret.startswith(KEY_PREFIX):
        return None
    api_key_id, separator, _ = secret[len(KEY_PREFIX) :].partition("_")
    if not separator or len(api_key_id) != 2 * _ID_BYTES:
        return None
    return api_key_id


def _hash(secret: str) -> bytes:
    # The secret carries 256 random bits, so a fast unsalted hash is enough:
    # unlike a password, it cannot be found by guessing from its hash.
    return hashlib.sha256(secret.encode()).digest()


def _api_key(row: sa.Row[Any]) -> ApiKey:
    return ApiKey(
        api_key_id=row.api_key_id,
        name=row.name,
        requests_per_minute=row.requests_per_minute,
        created_by=row.created_by,
        create_time=row.create_time,
        revoke_time=row.revoke_time,
        list_position=row.list_position,
    )
