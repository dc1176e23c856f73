"""Access and refresh tokens of admin sign-in sessions.

An access token is a JWT signed ES256, with the header fields alg, typ and
kid. Its claims are iss "retain-user", aud "retain", sub (the admin's
email), role ("admin" or "analyst"), iat, exp, jti (a random id) and sid
(the session id).

A refresh token is 32 random bytes in base64url, stored as its SHA-256 hash.
Each one works once: RefreshToken returns the next token of the same
session. A used token sent again was copied, so the whole session is revoked.
SignOut revokes the session. verify_access_token and session_live, which
Envoy's ext_authz Check calls for each request with a token, reject access
tokens whose sid names a revoked session.

iat and exp read the wall clock, because Envoy checks them against real
time; stored times read the service clock, which may run at an offset.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import secrets
import uuid
from dataclasses import dataclass
from typing import Any

import jwt
from retain_runtime.clock import Clock
from retain_runtime.errors import Unauthenticated

from retain_user import roles
from retain_user.admins import Admin
from retain_user.audit import AuditAction, audit_entry
from retain_user.session_cache import SessionCache
from retain_user.signing_keys import ALGORITHM, SigningKeys
from retain_user.token_store import TokenStore

log = logging.getLogger(__name__)

ISSUER = "retain-user"
AUDIENCE = "retain"
REQUIRED_CLAIMS = ["iss", "aud", "sub", "role", "iat", "exp", "jti", "sid"]

INVALID_REFRESH_TOKEN = (
    "the refresh token is invalid, expired or revoked; sign in again"
)
REUSED_REFRESH_TOKEN = (
    "the refresh token was already used, so its session is now revoked; sign in again"
)


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    access_token_ttl_seconds: int
    refresh_token: str


@dataclass(frozen=True)
class AccessClaims:
    """The claims of a verified access token."""

    subject: str
    role: str
    session_id: str
    token_id: str
    expire_time: dt.datetime


class TokenIssuer:
    """Starts, refreshes and ends sessions, and verifies access tokens."""

    def __init__(
        self,
        store: TokenStore,
        keys: SigningKeys,
        clock: Clock,
        wall_clock: Clock,
        ttl_seconds: tuple[int, int],
        sessions: SessionCache | None = None,
    ) -> None:
        """ttl_seconds is the lifetime of access tokens and of refresh tokens.

        sessions caches the results of session_live, which session_cache
        limits in age.
        """
        self._store = store
        self._keys = keys
        self._clock = clock
        self._wall_clock = wall_clock
        self._access_ttl, self._refresh_ttl = ttl_seconds
        self._sessions = sessions or SessionCache()

    async def start_session(self, admin: Admin) -> TokenPair:
        """Start a session for an admin who just signed in."""
        now = self._clock.now()
        session_id = uuid.uuid4().hex
        refresh_token, token_row = self._refresh_row(session_id, now)
        session_row = {
            "session_id": session_id,
            "admin_id": admin.admin_id,
            "create_time": now,
        }
        await self._store.start_session(session_row, token_row)
        access_token = await self._access_token(admin.email, admin.role, session_id)
        log.info("Started session %s for admin %d", session_id, admin.admin_id)
        return TokenPair(access_token, self._access_ttl, refresh_token)

    async def refresh(self, refresh_token: str) -> TokenPair:
        """Exchange a refresh token for new tokens; the one sent stops working.

        Raises Unauthenticated for an unknown, expired or revoked token, and
        revokes the session of a token that was already used.
        """
        now = self._clock.now()
        token_hash = _hash(refresh_token)
        row = await self._store.refresh_token(token_hash)
        if row is None or row.revoke_time is not None or row.expire_time <= now:
            raise Unauthenticated(INVALID_REFRESH_TOKEN)

        next_token, next_row = self._refresh_row(row.session_id, now)
        rotated = False
        if row.rotate_time is None:
            rotated = await self._store.rotate_refresh_token(token_hash, next_row)
        if not rotated:
            await self._revoke_reused(row, now)
            raise Unauthenticated(REUSED_REFRESH_TOKEN)

        access_token = await self._access_token(row.email, row.role, row.session_id)
        log.info("Refreshed session %s of admin %d", row.session_id, row.admin_id)
        return TokenPair(access_token, self._access_ttl, next_token)

    async def _revoke_reused(self, row: Any, now: dt.datetime) -> None:
        audit = audit_entry(AuditAction.REFRESH_TOKEN_REUSED, row.email, now)
        await self._store.revoke_session(row.session_id, audit.action.value, audit)
        self._sessions.put(row.session_id, live=False)
        log.warning(
            "Refresh token of session %s (admin %d) was used twice; "
            "revoked the session",
            row.session_id,
            row.admin_id,
        )

    async def sign_out(self, refresh_token: str) -> None:
        """Revoke the session of a refresh token; unknown tokens are ignored."""
        row = await self._store.refresh_token(_hash(refresh_token))
        if row is None or row.revoke_time is not None:
            log.info("Sign-out with an unknown or revoked refresh token; no change")
            return
        audit = audit_entry(AuditAction.SIGN_OUT, row.email, self._clock.now())
        await self._store.revoke_session(row.session_id, audit.action.value, audit)
        self._sessions.put(row.session_id, live=False)
        log.info("Admin %d signed out of session %s", row.admin_id, row.session_id)

    async def verify_access_token(self, token: str) -> AccessClaims:
        """Return the claims of a valid access token of a live session.

        Raises Unauthenticated naming what failed. Envoy's jwt_authn checks
        the signature, iss, aud and exp, and its ext_authz Check calls
        session_live for revocation.
        """
        claims = await self._verified_claims(token)
        expire_time = dt.datetime.fromtimestamp(claims["exp"], dt.UTC)
        if expire_time <= self._wall_clock.now():
            raise Unauthenticated("the access token expired; refresh it")
        if await self._store.session_revoked(claims["sid"]):
            raise Unauthenticated("the access token's session is revoked; sign in")
        return AccessClaims(
            subject=claims["sub"],
            role=claims["role"],
            session_id=claims["sid"],
            token_id=claims["jti"],
            expire_time=expire_time,
        )

    async def session_live(self, session_id: str) -> bool:
        """Return whether a session exists and is not revoked.

        A True result may come from the cache and be up to
        session_cache.LIVE_SECONDS old.
        """
        live = self._sessions.get(session_id)
        if live is None:
            live = not await self._store.session_revoked(session_id)
            self._sessions.put(session_id, live)
        return live

    async def _verified_claims(self, token: str) -> dict[str, Any]:
        """Check the signature, iss, aud and required claims, not exp."""
        try:
            kid = str(jwt.get_unverified_header(token).get("kid", ""))
        except jwt.InvalidTokenError:
            raise Unauthenticated("the access token is not a JWT") from None
        key = await self._keys.public_key(kid)
        if key is None:
            raise Unauthenticated("the access token's kid is not a published key")
        try:
            return jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=AUDIENCE,
                issuer=ISSUER,
                options={
                    "require": REQUIRED_CLAIMS,
                    "verify_exp": False,
                    "verify_iat": False,
                },
            )
        except jwt.InvalidTokenError as error:
            raise Unauthenticated(f"the access token is invalid: {error}") from None

    async def _access_token(self, email: str, role: int, session_id: str) -> str:
        kid, key = await self._keys.signing_key()
        issued = int(self._wall_clock.now().timestamp())
        claims = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": email,
            "role": roles.ROLE_NAMES[role],
            "iat": issued,
            "exp": issued + self._access_ttl,
            "jti": uuid.uuid4().hex,
            "sid": session_id,
        }
        return jwt.encode(claims, key, algorithm=ALGORITHM, headers={"kid": kid})

    def _refresh_row(
        self, session_id: str, now: dt.datetime
    ) -> tuple[str, dict[str, Any]]:
        token = secrets.token_urlsafe(32)
        return token, {
            "token_hash": _hash(token),
            "session_id": session_id,
            "create_time": now,
            "expire_time": now + dt.timedelta(seconds=self._refresh_ttl),
        }


def _hash(token: str) -> bytes:
    # A refresh token carries 256 random bits, so a plain SHA-256 hash cannot
    # be reversed by guessing and needs no salt or slow hash.
    return hashlib.sha256(token.encode()).digest()
