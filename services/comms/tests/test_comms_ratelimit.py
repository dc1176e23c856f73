"""The send rate limit that all workers share through one bucket in Redis."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio
from retain_cli.infra import Redis
from retain_comms.ratelimit import SendRateBusy, SendRateLimiter


@pytest.fixture
async def client(redis_server: Redis) -> AsyncIterator[redis.asyncio.Redis]:
    connection = redis.asyncio.Redis.from_url(redis_server.url)
    yield connection
    await connection.aclose()


@pytest.fixture
def namespace() -> str:
    return f"test-{uuid.uuid4().hex[:8]}"


async def test_full_bucket_takes_batch_at_once(
    client: redis.asyncio.Redis, namespace: str
) -> None:
    limiter = SendRateLimiter(client, namespace, rate_per_second=10)

    wait = await limiter.try_take(25)

    assert wait == 0


async def test_batch_over_bucket_makes_next_caller_wait(
    client: redis.asyncio.Redis, namespace: str
) -> None:
    limiter = SendRateLimiter(client, namespace, rate_per_second=10)
    await limiter.try_take(25)

    wait = await limiter.try_take(1)

    # The bucket contained 10 tokens and gave 25, so it is 15 short: at most
    # 1.5 s at 10 per second, less the time that passed between the calls.
    assert 0 < wait <= 1.501


async def test_workers_share_one_bucket(
    client: redis.asyncio.Redis, namespace: str
) -> None:
    first = SendRateLimiter(client, namespace, rate_per_second=10)
    second = SendRateLimiter(client, namespace, rate_per_second=10)
    await first.try_take(25)

    wait = await second.try_take(1)

    assert wait > 0


async def test_other_namespace_has_own_bucket(
    client: redis.asyncio.Redis, namespace: str
) -> None:
    await SendRateLimiter(client, namespace, rate_per_second=10).try_take(25)
    other = SendRateLimiter(client, namespace + "-other", rate_per_second=10)

    wait = await other.try_take(1)

    assert wait == 0


async def test_wait_over_limit_takes_no_tokens(
    client: redis.asyncio.Redis, namespace: str
) -> None:
    limiter = SendRateLimiter(client, namespace, rate_per_second=10)
    await limiter.try_take(25)

    with pytest.raises(SendRateBusy, match="25 send tokens were not free within 0.5 s"):
        await limiter.acquire(25, max_wait_seconds=0.5)

    # The bucket is still 15 tokens short, as the first take left it.
    assert await limiter.try_take(1) > 1.0
