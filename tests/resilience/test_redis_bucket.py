"""The Redis token bucket against real Redis (the shared one on 6379; a private one to restart)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis

from meshkit.resilience.redis_bucket import RedisTokenBucket
from meshkit.testing import FakeClock


def _require_redis() -> None:
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=1).close()
    except OSError:
        pytest.fail(
            "Redis is not running on 127.0.0.1:6379; start it with: redis-server --daemonize yes "
            "--bind 127.0.0.1 --port 6379 --save '' --appendonly no"
        )


@pytest.fixture
async def client() -> AsyncIterator[aioredis.Redis]:
    _require_redis()
    r = aioredis.Redis(host="127.0.0.1", port=6379)
    yield r
    await r.aclose()


async def test_two_processes_share_one_limit(client: aioredis.Redis) -> None:
    key = f"meshkit-test:{uuid.uuid4().hex}"
    a = RedisTokenBucket(client, key, rate=1, burst=5)
    b = RedisTokenBucket(client, key, rate=1, burst=5)
    results = [await (a if i % 2 else b).try_acquire() for i in range(8)]
    assert [ok for ok, _ in results] == [True] * 5 + [False] * 3
    assert 0 < results[-1][1] <= 1.0  # retry-after: about one token's worth of time
    assert not a.using_fallback


class PrivateRedis:
    def __init__(self, port: int = 6391) -> None:
        if shutil.which("redis-server") is None:
            pytest.fail("redis-server is not installed")
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("private redis did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis()
    server.start()
    yield server
    server.stop()


async def test_falls_back_while_redis_is_down_and_returns_after(private_redis: PrivateRedis) -> None:
    clock = FakeClock()
    r = aioredis.Redis(host="127.0.0.1", port=private_redis.port, socket_connect_timeout=0.5, socket_timeout=0.5)
    bucket = RedisTokenBucket(r, "k", rate=1, burst=3, fallback_share=1, retry_every=2.0, clock=clock)
    try:
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
