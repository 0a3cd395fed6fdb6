"""The Redis token bucket against real Redis (the shared one on 6379; a private one to restart)."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis

from meshkit.resilience.redis_bucket import RedisLink, RedisTokenBucket, redact
from meshkit.testing import FakeClock
from tests.resilience.redis_engine import SHARED, PrivateRedis, require_redis


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


#: One process's share of a limit: connect, wait for "go" on stdin (so both processes take at the
#: same time), take ``attempts`` tokens, print how many were granted and whether Redis decided.
TAKER = """
import asyncio, json, sys
from meshkit.resilience.redis_bucket import RedisLink, RedisTokenBucket

async def main(url, key, attempts):
    link = RedisLink.from_url(url)
    bucket = RedisTokenBucket(link, key, rate=0.001, burst=10)
    connected = await link.connect()
    print("ready", flush=True)
    sys.stdin.readline()
    granted = sum([(await bucket.try_acquire())[0] for _ in range(attempts)])
    print(json.dumps({"granted": granted, "connected": connected, "fallback": bucket.using_fallback}), flush=True)
    await link.close()

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


async def test_two_processes_share_one_limit(client: aioredis.Redis) -> None:
    """Two processes with a bucket of the same key are granted, together, what one bucket holds:
    the limit is the fleet's, not each process's (10 tokens, no refill to speak of, 20 asked)."""
    key = f"meshkit-test:{uuid.uuid4().hex}"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", TAKER, SHARED, key, "10"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        reports = [json.loads(proc.communicate(timeout=30)[0]) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
        await client.delete(key)
    assert all(r["connected"] and not r["fallback"] for r in reports), reports
    assert sum(r["granted"] for r in reports) == 10, reports


async def test_refusals_say_when_a_token_will_be_there(client: aioredis.Redis) -> None:
    key = f"meshkit-test:{uuid.uuid4().hex}"
    link = RedisLink(client)
    bucket = RedisTokenBucket(link, key, rate=1, burst=5)
    results = [await bucket.try_acquire() for _ in range(6)]
    assert [ok for ok, _ in results] == [True] * 5 + [False]
    assert 0 < results[-1][1] <= 1.0  # retry-after: about one token's worth of time
    assert not bucket.using_fallback
    await client.delete(key)


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
