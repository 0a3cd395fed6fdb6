"""The Redis token bucket against real Redis (the shared one on 6379; a private one to restart)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis

from meshkit.resilience.redis_bucket import RedisLink, RedisTokenBucket, redact
from meshkit.testing import FakeClock
from tests.resilience.redis_engine import PrivateRedis, require_redis


@pytest.fixture
async def client() -> AsyncIterator[aioredis.Redis]:
    require_redis()
    r = aioredis.Redis(host="127.0.0.1", port=6379)
    yield r
    await r.aclose()


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis()
    server.start()
    yield server
    server.stop()


async def test_two_processes_share_one_limit(client: aioredis.Redis) -> None:
    key = f"meshkit-test:{uuid.uuid4().hex}"
    a = RedisTokenBucket(RedisLink(client), key, rate=1, burst=5)
    b = RedisTokenBucket(RedisLink(client), key, rate=1, burst=5)
    results = [await (a if i % 2 else b).try_acquire() for i in range(8)]
    assert [ok for ok, _ in results] == [True] * 5 + [False] * 3
    assert 0 < results[-1][1] <= 1.0  # retry-after: about one token's worth of time
    assert not a.using_fallback


async def test_falls_back_while_redis_is_down_and_returns_after(private_redis: PrivateRedis) -> None:
    clock = FakeClock()
    r = aioredis.Redis(host="127.0.0.1", port=private_redis.port, socket_connect_timeout=0.5, socket_timeout=0.5)
    link = RedisLink(r, retry_every=2.0, clock=clock)
    bucket = RedisTokenBucket(link, "k", rate=1, burst=3, fallback_share=1)
    try:
        assert await link.connect()
        assert [(await bucket.try_acquire())[0] for _ in range(4)] == [True, True, True, False]
        private_redis.stop()
        # Redis gone: the local bucket decides (full at first), never unlimited.
        local = [(await bucket.try_acquire())[0] for _ in range(4)]
        assert bucket.using_fallback and local == [True, True, True, False]
        private_redis.start()
        clock.advance(1.0)
        await bucket.try_acquire()
        assert bucket.using_fallback  # not retried before retry_every
        clock.advance(1.5)
        assert (await bucket.try_acquire())[0]  # Redis is back (and fresh: it kept nothing)
        assert not bucket.using_fallback
    finally:
        await r.aclose()


def test_logged_urls_do_not_show_the_password() -> None:
    assert redact("redis://:s3cret@10.0.0.1:6379/0") == "redis://:***@10.0.0.1:6379/0"
    assert redact("redis://ann:s3cret@host/1") == "redis://ann:***@host/1"
    assert redact("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
