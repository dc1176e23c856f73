"""Password hashing with argon2id (argon2-cffi), off the event loop.

Hashes use RFC 9106's low-memory argon2id profile (argon2.profiles
RFC_9106_LOW_MEMORY: time cost 3, 64 MiB, 4 lanes), which is also
argon2-cffi's default. Each hash takes tens of milliseconds of CPU or more,
so calls run in worker threads, at most MAX_CONCURRENT_HASHES at a time.
"""

from __future__ import annotations

import asyncio

from argon2 import Parameters, PasswordHasher, profiles
from argon2.exceptions import InvalidHashError, VerificationError

# Bounds the memory of concurrent sign-ins to 4 x 64 MiB.
MAX_CONCURRENT_HASHES = 4


class Passwords:
    """Hashes and verifies passwords; verify costs the same for unknown users."""

    def __init__(self, parameters: Parameters = profiles.RFC_9106_LOW_MEMORY) -> None:
        """parameters other than the default are for tests only."""
        self._hasher = PasswordHasher.from_parameters(parameters)
        self._slots = asyncio.Semaphore(MAX_CONCURRENT_HASHES)
        # Verified against when an email has no account, so that a wrong
        # email takes as long as a wrong password. It is made on first use,
        # which makes that first sign-in one hash slower.
        self._absent_hash: str | None = None

    async def hash(self, password: str) -> str:
        async with self._slots:
            return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """Return whether password matches; a None hash never matches."""
        if password_hash is None and self._absent_hash is None:
            self._absent_hash = await self.hash("no account has this password")
        stored = password_hash or self._absent_hash or ""
        try:
            async with self._slots:
                await asyncio.to_thread(self._hasher.verify, stored, password)
        except (VerificationError, InvalidHashError):
            return False
        return password_hash is not None

    def needs_rehash(self, password_hash: str) -> bool:
        """Return whether a hash was made with other parameters than these."""
        return self._hasher.check_needs_rehash(password_hash)
