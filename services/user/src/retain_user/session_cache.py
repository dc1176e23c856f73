"""A short-lived, in-process record of which sign-in sessions are live.

Envoy's ext_authz filter calls the user service's Check for every request
with an access token, so each result is kept for a while instead of reading
PostgreSQL each time. A live result is kept for LIVE_SECONDS. A revoked or
unknown session never becomes live, so that result is kept until evicted.
Sign-out and revocation in this process store the session as revoked at once.

A session revoked through another replica of the user service is still
reported live here for at most LIVE_SECONDS.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

LIVE_SECONDS = 5.0
# The largest number of sessions cached. A full cache starts again empty.
MAX_ENTRIES = 10_000


class SessionCache:
    """Live or revoked, by session id, with an expiry time per entry."""

    def __init__(
        self,
        live_seconds: float = LIVE_SECONDS,
        max_entries: int = MAX_ENTRIES,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._live_seconds = live_seconds
        self._max_entries = max_entries
        self._monotonic = monotonic
        # session id -> (live, monotonic time when the entry expires)
        self._entries: dict[str, tuple[bool, float]] = {}

    def get(self, session_id: str) -> bool | None:
        """Return whether the session is live, or None when not cached."""
        entry = self._entries.get(session_id)
        if entry is None:
            return None
        live, expire_at = entry
        if self._monotonic() >= expire_at:
            del self._entries[session_id]
            return None
        return live

    def put(self, session_id: str, live: bool) -> None:
        """Store whether a session is live, as read or as just changed."""
        if len(self._entries) >= self._max_entries:
            self._entries.clear()
        expire_at = self._monotonic() + self._live_seconds if live else math.inf
        self._entries[session_id] = (live, expire_at)
