"""What the Redis lock tests share: a backend under a prefix of its own, a raw client to look at
what it leaves on the engine, and a deadline-bounded poll."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import redis.asyncio as aioredis

from meshkit.coord.redis import RedisLocks, open_redis
from meshkit.schemes import BackendURL
from tests.helpers import eventually
from tests.resilience.redis_engine import SHARED, require_redis


@dataclass
class Engine:
    """The backend under test and a raw client of the same Redis, both confined to ``prefix``."""

    backend: RedisLocks
    raw: aioredis.Redis
    prefix: str

    async def keys(self) -> set[str]:
        """Every key under this test's prefix, as SCAN finds them on the engine."""
        await self.raw.connection_pool.disconnect()  # a test may have restarted the engine
        return {key.decode() async for key in self.raw.scan_iter(match=f"{self.prefix}*", count=1000)}

    async def subscribers(self, name: str) -> int:
        channel = self.backend.keys(name)[2]
        return int(dict(await self.raw.pubsub_numsub(channel))[channel.encode()])


async def open_engine(url: str = SHARED) -> AsyncIterator[Engine]:
    """An :class:`Engine` on ``url`` (the shared Redis, which must run); every key of its prefix
    is deleted afterwards. Each test module makes it its fixture."""
    if url == SHARED:
        require_redis()
    prefix = f"meshkit-test:{uuid.uuid4().hex}:"
    backend = open_redis(BackendURL.parse(f"{url}?prefix={prefix}"))
    raw = aioredis.from_url(url)
    try:
        yield Engine(backend, raw, prefix)
    finally:
        await backend.close()
        await raw.connection_pool.disconnect()  # connections made before an engine restart are dead
        async for key in raw.scan_iter(match=f"{prefix}*", count=1000):
            await raw.delete(key)
        await raw.aclose()


def name() -> str:
    return f"stock:{uuid.uuid4().hex}"


def owner() -> str:
    return uuid.uuid4().hex


async def until(condition: Callable[[], Awaitable[bool]], timeout: float = 5.0, what: str = "condition") -> None:
    """tests.helpers.eventually, with this module's argument names."""
    await eventually(condition, timeout, what, interval=0.005)
