"""A holder cut off from Redis (a partition, through a fault proxy) gives up its lock before
Redis lets anyone else have it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from meshkit.coord.locks import Locks
from meshkit.errors import LockLost
from meshkit.testing.proxy import FaultProxy
from tests.coord.redis_helpers import Engine, name, open_engine, owner


@pytest.fixture
async def engine() -> AsyncIterator[Engine]:
    async for opened in open_engine():
        yield opened


async def test_a_cut_off_holder_gives_up_before_a_waiter_is_granted(engine: Engine) -> None:
    loop = asyncio.get_running_loop()
    lock, ttl = name(), 2.0
    async with FaultProxy("127.0.0.1:6379") as proxy:
        cut = Locks(f"redis://{proxy.address}/0?prefix={engine.prefix}&timeout=0.3")
        try:
            held = await cut.acquire(lock, ttl=ttl, wait=0)
            waiter = asyncio.create_task(engine.backend.acquire(lock, owner(), ttl=10.0, wait=ttl * 4))
            when: dict[str, float] = {}
            lost = asyncio.create_task(held.lost.wait())
            lost.add_done_callback(lambda _: when.setdefault("lost", loop.time()))
            waiter.add_done_callback(lambda _: when.setdefault("granted", loop.time()))
            proxy.partition()
            cut_at = loop.time()
            grant = await waiter
            await lost
            assert when["lost"] <= when["granted"], f"the holder gave up {when['lost'] - when['granted']:.3f}s late"
            assert when["granted"] - cut_at < ttl + 1.0, "the waiter was woken at the lease's end, not later"
            assert grant.token > held.token
            with pytest.raises(LockLost):
                await held.release()
            assert await engine.backend.release(grant)
        finally:
            proxy.heal()
            await cut.close()
    assert await engine.keys() == {engine.backend.keys(lock)[1]}
