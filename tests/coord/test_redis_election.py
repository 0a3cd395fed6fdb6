"""holder() and watch() on Redis: who holds a name now, and every change of that."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from meshkit.coord.backend import Holder
from tests.coord.redis_helpers import Engine, name, open_engine, owner, until


@pytest.fixture
async def engine() -> AsyncIterator[Engine]:
    async for opened in open_engine():
        yield opened


async def test_holder_is_the_grant_and_none_after_release(engine: Engine) -> None:
    lock = name()
    assert await engine.backend.holder(lock) is None
    grant = await engine.backend.acquire(lock, owner(), ttl=10.0, wait=0, value=b"node-a")
    assert await engine.backend.holder(lock) == Holder(grant.owner, b"node-a", grant.token)
    assert await engine.backend.release(grant)
    assert await engine.backend.holder(lock) is None


async def test_watch_sees_grants_releases_and_an_expiry(engine: Engine) -> None:
    lock = name()
    seen: list[Holder | None] = []

    async def follow() -> None:
        async for holder in engine.backend.watch(lock):
            seen.append(holder)

    watcher = asyncio.create_task(follow())
    await until(lambda: _has(seen, 1), what="the watcher saw the holder now")
    a = await engine.backend.acquire(lock, owner(), ttl=10.0, wait=0, value=b"node-a")
    await until(lambda: _has(seen, 2), what="the watcher saw the grant")
    assert await engine.backend.release(a)
    await until(lambda: _has(seen, 3), what="the watcher saw the release")
    b = await engine.backend.acquire(lock, owner(), ttl=0.3, wait=0, value=b"node-b")  # b dies: never releases
    await until(lambda: _has(seen, 5), what="the watcher saw the grant and the expiry")
    assert seen == [None, Holder(a.owner, b"node-a", a.token), None, Holder(b.owner, b"node-b", b.token), None]
    watcher.cancel()
    with pytest.raises(asyncio.CancelledError):
        await watcher
    await until(lambda: _unsubscribed(engine, lock), what="the watcher unsubscribed")
    assert await engine.keys() == {engine.backend.keys(lock)[1]}


async def _has(seen: list[Holder | None], count: int) -> bool:
    return len(seen) >= count


async def _unsubscribed(engine: Engine, lock: str) -> bool:
    return await engine.subscribers(lock) == 0
