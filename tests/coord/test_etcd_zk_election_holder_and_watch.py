"""etcd and ZooKeeper elections: ``holder`` is the first in the queue (owner, value, token) and
``watch`` yields it now and again on every change, None while nobody holds the name."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from meshkit.coord.backend import Holder
from tests.coord.etcd_zk import Engine, engine, eventually, unique

__all__ = ["engine"]


async def next_holder(changes: AsyncIterator[Holder | None]) -> Holder | None:
    return await asyncio.wait_for(changes.__anext__(), 10)


async def test_holder_is_the_first_in_the_queue(engine: Engine) -> None:
    a, b = engine.open(), engine.open()
    name = unique()
    assert await a.holder(name) is None
    first = await a.acquire(name, "node-a", 10.0, None, b"10.0.0.1:7001")
    assert await b.holder(name) == Holder("node-a", b"10.0.0.1:7001", first.token)
    waiter = asyncio.create_task(b.acquire(name, "node-b", 10.0, None, b"10.0.0.2:7001"))
    assert await a.release(first)
    second = await asyncio.wait_for(waiter, 10)
    assert await a.holder(name) == Holder("node-b", b"10.0.0.2:7001", second.token)
    assert await b.release(second)
    assert await a.holder(name) is None


async def test_watch_yields_every_change_of_holder(engine: Engine) -> None:
    a, b, watcher = engine.open(), engine.open(), engine.open()
    name = unique()
    changes = watcher.watch(name)
    try:
        assert await next_holder(changes) is None
        first = await a.acquire(name, "node-a", 10.0, None, b"a")
        assert await next_holder(changes) == Holder("node-a", b"a", first.token)
        waiter = asyncio.create_task(b.acquire(name, "node-b", 10.0, None, b"b"))

        async def queued() -> bool:
            return len(await engine.inspect.nodes(name)) == 2

        await eventually(queued, what="node-b queued")  # so the lead passes straight from a to b
        assert await a.release(first)
        second = await asyncio.wait_for(waiter, 10)
        assert await next_holder(changes) == Holder("node-b", b"b", second.token)
        assert await b.release(second)
        assert await next_holder(changes) is None
    finally:
        await changes.aclose()  # type: ignore[attr-defined]
    assert await engine.inspect.everything() == []
