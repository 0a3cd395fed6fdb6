"""A waiter that is cancelled, or whose wait runs out, takes its key (etcd) or node (ZooKeeper)
with it: checked on the engine itself, for one waiter and for 400 at once."""

from __future__ import annotations

import asyncio

import pytest

from meshkit.errors import LockTimeout
from tests.coord.etcd_zk import Engine, engine, eventually, unique

__all__ = ["engine"]


async def test_a_cancelled_waiter_leaves_no_key_or_node(engine: Engine) -> None:
    a, b = engine.open(), engine.open()
    name = unique()
    held = await a.acquire(name, "a", 10.0, None)
    waiter = asyncio.create_task(b.acquire(name, "b", 10.0, None))

    async def queued() -> bool:
        return len(await engine.inspect.nodes(name)) == 2

    await eventually(queued, what="the waiter queued")
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert len(await engine.inspect.nodes(name)) == 1
    assert await a.release(held)
    assert await engine.inspect.everything() == []


async def test_four_hundred_cancelled_waits_leave_nothing(engine: Engine) -> None:
    a, b = engine.open(), engine.open()
    name = unique()
    held = await a.acquire(name, "a", 10.0, None)
    waiters = [asyncio.create_task(b.acquire(name, f"w{i}", 10.0, None)) for i in range(400)]

    async def all_queued() -> bool:
        return len(await engine.inspect.nodes(name)) == 401

    await eventually(all_queued, within=60, what="400 waiters queued")
    for waiter in waiters:
        waiter.cancel()
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert all(isinstance(r, asyncio.CancelledError) for r in results)
    assert len(await engine.inspect.nodes(name)) == 1
    assert await a.release(held)
    assert await engine.inspect.everything() == []


async def test_waiters_cancelled_before_they_queued_leave_nothing(engine: Engine) -> None:
    """Cancelled at every point of the acquire, including while the key/node is being created."""
    a, b = engine.open(), engine.open()
    name = unique()
    held = await a.acquire(name, "a", 10.0, None)
    for step in range(40):
        waiter = asyncio.create_task(b.acquire(name, "b", 10.0, None))
        for _ in range(step % 8):
            await asyncio.sleep(0)
        waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)
    assert len(await engine.inspect.nodes(name)) == 1
    assert await a.release(held)
    assert await engine.inspect.everything() == []


async def test_timed_out_waiters_leave_nothing(engine: Engine) -> None:
    a, b = engine.open(), engine.open()
    name = unique()
    held = await a.acquire(name, "a", 10.0, None)
    results = await asyncio.gather(*(b.acquire(name, f"w{i}", 10.0, 0.2) for i in range(20)), return_exceptions=True)
    assert all(isinstance(r, LockTimeout) for r in results), results
    assert len(await engine.inspect.nodes(name)) == 1
    assert await a.release(held)
    assert await engine.inspect.everything() == []
