"""ES256 key pairs that sign access tokens, and their JSON Web Key Set.

The service creates a P-256 key pair when it has none, and a new one when
the newest is older than ROTATION_PERIOD. The JWKS publishes the newest key
and the one before it. A new key starts signing only PUBLISH_DELAY after its
creation, so verifiers that cache the JWKS fetch it before the first token
that needs it. Envoy's remote_jwks cache_duration must therefore stay below
PUBLISH_DELAY. The previous key stays published until the next rotation,
long after its last tokens expired. The first key signs at once. Private keys are stored as PKCS#8 PEM encrypted with the data key,
public keys as JWKs (RFC 7517) whose kid is the RFC 7638 thumbprint.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import logging
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt import PyJWK
from jwt.algorithms import ECAlgorithm
from retain_runtime.clock import Clock

from retain_user.crypto import DataCipher
from retain_user.token_store import TokenStore

log = logging.getLogger(__name__)

ALGORITHM = "ES256"
ROTATION_PERIOD = dt.timedelta(days=30)
PUBLISH_DELAY = dt.timedelta(hours=1)
PUBLISHED_KEYS = 2


class SigningKeys:
    """Creates, rotates, loads and publishes the token signing keys."""

    def __init__(self, store: TokenStore, cipher: DataCipher, clock: Clock) -> None:
        self._store = store
        self._cipher = cipher
        self._clock = clock
        # Decrypted private keys by kid; keys never change once created.
        self._private: dict[str, ec.EllipticCurvePrivateKey] = {}

    async def signing_key(self) -> tuple[str, ec.EllipticCurvePrivateKey]:
        """Return the kid and private key that sign now, rotating if due."""
        rows = await self._current_rows(PUBLISHED_KEYS)
        published_before = self._clock.now() - PUBLISH_DELAY
        row = rows[0]
        if row.create_time > published_before and len(rows) > 1:
            row = rows[1]
        if row.kid not in self._private:
            pem = self._cipher.decrypt(row.private_key_encrypted).encode()
            key = serialization.load_pem_private_key(pem, password=None)
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise TypeError(f"signing key {row.kid} is not an EC private key")
            self._private[row.kid] = key
        return row.kid, self._private[row.kid]

    async def published(self) -> list[dict[str, str]]:
        """Return the public JWKs of the newest key and the one before it."""
        rows = await self._current_rows(PUBLISHED_KEYS)
        return [dict(row.public_jwk) for row in rows]

    async def public_key(self, kid: str) -> Any | None:
        """Return the public key of a published kid, or None."""
        for jwk in await self.published():
            if jwk["kid"] == kid:
                return PyJWK(jwk).key
        return None

    async def _current_rows(self, limit: int) -> list[Any]:
        rows = list(await self._store.newest_signing_keys(limit))
        now = self._clock.now()
        stale_before = now - ROTATION_PERIOD
        if not rows or rows[0].create_time <= stale_before:
            kid, row = self._new_key_row(now)
            if await self._store.insert_signing_key(row, stale_before):
                log.info("Created signing key %s", kid)
            rows = list(await self._store.newest_signing_keys(limit))
        return rows

    def _new_key_row(self, now: dt.datetime) -> tuple[str, dict[str, Any]]:
        private = ec.generate_private_key(ec.SECP256R1())
        jwk = ECAlgorithm.to_jwk(private.public_key(), as_dict=True)
        kid = thumbprint(jwk)
        pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return kid, {
            "kid": kid,
            "private_key_encrypted": self._cipher.encrypt(pem.decode()),
            "public_jwk": {**jwk, "kid": kid, "use": "sig", "alg": ALGORITHM},
            "create_time": now,
        }


def thumbprint(jwk: dict[str, Any]) -> str:
    """Return the RFC 7638 SHA-256 thumbprint of an EC public JWK, base64url."""
    members = {name: jwk[name] for name in ("crv", "kty", "x", "y")}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True)
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")
