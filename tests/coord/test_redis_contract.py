"""redis:// keeps the lock contract and the election contract (the shared suites), on the shared Redis."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from meshkit.coord.election import Election, Term
from meshkit.coord.locks import Held, Locks
from tests.coord.contract import CutOffContract
from tests.coord.election_contract import ElectionContract
from tests.resilience.redis_engine import SHARED, require_redis

PREFIX = "meshkit-test:contract:"
URL = f"{SHARED}?prefix={PREFIX}"


@pytest.fixture
async def raw() -> AsyncIterator[aioredis.Redis]:
    require_redis()
    client = aioredis.from_url(SHARED)
    yield client
    async for key in client.scan_iter(match=f"{PREFIX}*", count=1000):
        await client.delete(key)
    await client.aclose()


async def _expire(raw: aioredis.Redis, name: str) -> None:
    """End the holder's lease on the engine, as its expiry would (no release is published)."""
    assert await raw.pexpire(f"{PREFIX}lock:{name}", 1)


class TestRedisLocks(CutOffContract):
    url = URL

    @pytest.fixture(autouse=True)
    def _raw(self, raw: aioredis.Redis) -> None:
        self.raw = raw

    async def break_lease(self, locks: Locks, held: Held) -> None:
        await _expire(self.raw, held.name)

    async def leftovers(self, locks: Locks, name: str) -> list[str]:
        left = [key.decode() async for key in self.raw.scan_iter(match=f"{PREFIX}lock:{name}")]
        channel = f"{PREFIX}chan:{name}"
        subscribed = dict(await self.raw.pubsub_numsub(channel))[channel.encode()]
        return left + ([f"{subscribed} subscriber(s) of {channel}"] if subscribed else [])


class TestRedisElection(ElectionContract):
    url = URL
    ttl = 1.5

    @pytest.fixture(autouse=True)
    def _raw(self, raw: aioredis.Redis) -> None:
        self.raw = raw

    @pytest.fixture
    async def pair(self) -> AsyncIterator[tuple[Election, Election]]:
        """The contract's pair, each already connected: its tests that create a challenger's task
        before the first candidate's call assume that call reaches the engine first, which two
        fresh clients racing through their connection handshakes do not promise."""
        name = f"contract-{uuid.uuid4().hex[:12]}"
        a, b = Election(self.url, name, ttl=self.ttl), Election(self.url, name, ttl=self.ttl)
        try:
            assert await a.leader() is None and await b.leader() is None  # connects both
            yield a, b
        finally:
            await a.close()
            await b.close()

    async def break_lease(self, election: Election, term: Term) -> None:
        await _expire(self.raw, term.name)
