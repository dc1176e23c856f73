"""The send rate limit that every worker process shares, kept in Redis.

It is a token bucket refilled at AT_SEND_RATE_PER_SECOND tokens per second,
holding at most one second's worth. A request to n recipients takes n tokens
at once and may drive the bucket below zero, so a batch larger than the
bucket still goes out in one request. The next caller then waits until the
bucket is positive again, which keeps the average at the rate. The bucket
lives in one Redis hash that a Lua script reads and updates atomically, with
the time read from Redis so the workers' clocks do not matter.
"""

from __future__ import annotations

import asyncio
import logging
import math

import redis.asyncio

log = logging.getLogger(__name__)

# Seconds a caller sleeps at most before it tries the bucket again.
MAX_WAIT_SECONDS = 1.0

# KEYS[1] is the bucket. ARGV: rate per second, capacity, tokens to take.
# Returns "0" when the tokens were taken, else the seconds to wait as a string,
# because Redis turns a Lua number into an integer.
_TAKE_TOKENS = """
redis.replicate_commands()
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1000000
local rate = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'time')
local tokens = tonumber(state[1]) or capacity
local last = tonumber(state[2]) or t
tokens = math.min(capacity, tokens + math.max(0, t - last) * rate)
if tokens <= 0 then
  return tostring(-tokens / rate + 0.001)
end
tokens = tokens - tonumber(ARGV[3])
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'time', tostring(t))
redis.call('EXPIRE', KEYS[1], 3600)
return '0'
"""


class SendRateBusy(Exception):
    """Raised when the tokens were not free within the caller's wait limit;
    none were taken."""


class SendRateLimiter:
    """Takes tokens from the bucket shared by every worker before a send."""

    def __init__(
        self, client: redis.asyncio.Redis, namespace: str, rate_per_second: float
    ) -> None:
        self.key = f"{namespace}:send-rate"
        self.rate = rate_per_second
        self._take = client.register_script(_TAKE_TOKENS)

    async def acquire(self, count: int, max_wait_seconds: float = math.inf) -> None:
        """Wait until count recipients may be sent to, and take their tokens.

        Raises SendRateBusy when that would take longer than max_wait_seconds,
        and redis.RedisError when Redis cannot be reached.
        """
        waited = 0.0
        while True:
            wait = await self.try_take(count)
            if wait <= 0:
                break
            if waited + wait > max_wait_seconds:
                raise SendRateBusy(
                    f"{count} send tokens were not free within "
                    f"{max_wait_seconds:g} s at {self.rate:g} per second"
                )
            wait = min(wait, MAX_WAIT_SECONDS)
            waited += wait
            await asyncio.sleep(wait)
        if waited:
            log.debug("Waited %.3f s for %d send tokens", waited, count)

    async def try_take(self, count: int) -> float:
        """Take count tokens and return 0 if the bucket is positive, else take
        none and return the seconds until it is."""
        reply = await self._take(keys=[self.key], args=[self.rate, self.rate, count])
        return float(reply)
