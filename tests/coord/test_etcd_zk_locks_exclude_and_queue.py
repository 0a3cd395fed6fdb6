"""etcd and ZooKeeper locks: one holder at a time, tokens that only grow, waits that end when
they should, and waiters served in the order they asked (both backends queue FIFO)."""

from __future__ import annotations

import asyncio
import time

import pytest

from meshkit.errors import LockTimeout
from tests.coord.etcd_zk import Engine, engine, eventually, unique

__all__ = ["engine"]


async def test_one_holder_at_a_time_and_tokens_strictly_increase(engine: Engine) -> None:
    backends = [engine.open() for _ in range(3)]
    name = unique()
    inside = 0
    most_inside = 0
    tokens: list[int] = []

    async def worker(i: int) -> None:
        nonlocal inside, most_inside
        for _ in range(4):
            grant = await backends[i % 3].acquire(name, f"w{i}", 10.0, None)
            inside += 1
            most_inside = max(most_inside, inside)
            tokens.append(grant.token)
            await asyncio.sleep(0.005)  # give a second holder the chance to get in, if it could
            inside -= 1
            assert await backends[i % 3].release(grant)

    await asyncio.wait_for(asyncio.gather(*(worker(i) for i in range(6))), 60)
    assert most_inside == 1
    assert len(tokens) == 24
    assert tokens == sorted(tokens) and len(set(tokens)) == len(tokens), tokens
    assert await engine.inspect.everything() == []


async def test_wait_zero_tries_once(engine: Engine) -> None:
    a, b = engine.open(), engine.open()
    name = unique()
    held = await a.acquire(name, "a", 10.0, None)
    started = time.monotonic()
    with pytest.raises(LockTimeout, match="held"):
        await b.acquire(name, "b", 10.0, 0)
    assert time.monotonic() - started < 2.0
    assert len(await engine.inspect.nodes(name)) == 1  # the holder's, not b's
    assert await a.release(held)
    again = await b.acquire(name, "b", 10.0, 0)
    assert again.token > held.token
    assert await b.release(again)


async def test_a_finite_wait_times_out_and_leaves_nothing(engine: Engine) -> None:
    a, b = engine.open(), engine.open()
    name = unique()
    held = await a.acquire(name, "a", 10.0, None)
    started = time.monotonic()
    with pytest.raises(LockTimeout, match=r"within 0\.3s"):
        await b.acquire(name, "b", 10.0, 0.3)
    took = time.monotonic() - started
    assert 0.3 <= took < 2.0, took
    assert len(await engine.inspect.nodes(name)) == 1
    assert await a.release(held)
    assert await engine.inspect.everything() == []


async def test_release_wakes_the_next_waiter_at_once(engine: Engine) -> None:
    a, b = engine.open(), engine.open()
    name = unique()
    held = await a.acquire(name, "a", 10.0, None)
    waiter = asyncio.create_task(b.acquire(name, "b", 10.0, None))

    async def queued() -> bool:
        return len(await engine.inspect.nodes(name)) == 2

    await eventually(queued, what="the waiter's key/node on the engine")
    released = time.monotonic()
    assert await a.release(held)
    grant = await asyncio.wait_for(waiter, 5)
    woke = time.monotonic() - released
    assert woke < 0.5, f"the waiter took {woke:.3f}s to get a released lock"
    assert grant.owner == "b" and grant.token > held.token
    assert await b.release(grant)


async def test_waiters_are_served_in_the_order_they_asked(engine: Engine) -> None:
    holder = engine.open()
    name = unique()
    first = await holder.acquire(name, "holder", 10.0, None)
    order: list[int] = []
    backends = [engine.open() for _ in range(5)]

    async def wait_then_release(i: int) -> None:
        grant = await backends[i].acquire(name, f"w{i}", 10.0, None)
        order.append(i)
        assert await backends[i].release(grant)

    waiters = []
    for i in range(5):
        waiters.append(asyncio.create_task(wait_then_release(i)))

        async def in_queue(count: int = i + 2) -> bool:
            return len(await engine.inspect.nodes(name)) == count

        await eventually(in_queue, what=f"waiter {i} queued")  # asked strictly after waiter i-1
    assert await holder.release(first)
    await asyncio.wait_for(asyncio.gather(*waiters), 20)
    assert order == [0, 1, 2, 3, 4]
    assert await engine.inspect.everything() == []
