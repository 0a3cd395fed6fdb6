"""A private Redis (no persistence) restarted under a holder: the grant is reported lost, and
tokens handed out after the restart are still above those before it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.exceptions

from meshkit.coord.backend import Grant
from meshkit.errors import EngineUnavailable
from tests.coord.redis_helpers import Engine, name, open_engine, owner, until
from tests.resilience.redis_engine import PrivateRedis


@pytest.fixture
def server() -> Iterator[PrivateRedis]:
    private = PrivateRedis()
    private.start()
    yield private
    private.stop()


@pytest.fixture
async def engine(server: PrivateRedis) -> AsyncIterator[Engine]:
    async for opened in open_engine(server.url):
        yield opened


async def test_a_restart_loses_the_grant_and_tokens_still_grow(server: PrivateRedis, engine: Engine) -> None:
    lock = name()
    before = await engine.backend.acquire(lock, owner(), ttl=30.0, wait=0)
    assert await engine.backend.renew(before)
    server.stop()
    with pytest.raises(EngineUnavailable, match=rf"127\.0\.0\.1:{server.port}"):
        await engine.backend.renew(before)
    server.start()
    renewed = await _renew_when_up(engine, before)
    assert renewed is False, "Redis kept nothing: the renewal says the grant is lost"
    assert await engine.backend.holder(lock) is None
    after = await engine.backend.acquire(lock, owner(), ttl=30.0, wait=0)
    assert after.token > before.token, "the token is above every one handed out before the restart"
    assert await engine.backend.release(after)
    assert await engine.keys() == {engine.backend.keys(lock)[1]}


async def test_a_waiter_during_a_restart_is_told_the_engine_is_unavailable(
    server: PrivateRedis, engine: Engine
) -> None:
    lock = name()
    held = await engine.backend.acquire(lock, owner(), ttl=30.0, wait=0)
    waiter = asyncio.create_task(engine.backend.acquire(lock, owner(), ttl=30.0, wait=None))
    await until(lambda: _subscribed(engine, lock), what="the waiter subscribed")
    server.stop()
    with pytest.raises(EngineUnavailable, match=rf"127\.0\.0\.1:{server.port}"):
        await asyncio.wait_for(waiter, 10.0)
    server.start()
    assert not await _renew_when_up(engine, held)
    assert await engine.keys() == set(), "nothing survived the restart, and the waiter wrote nothing"


async def _subscribed(engine: Engine, lock: str) -> bool:
    return await engine.subscribers(lock) == 1


async def _renew_when_up(engine: Engine, grant: Grant) -> bool:
    """renew() once the engine answers (it may say EngineUnavailable while it starts)."""
    deadline = time.monotonic() + 10.0
    while True:
        try:
            return await engine.backend.renew(grant)
        except EngineUnavailable:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.01)


async def test_waiting_works_again_after_the_engine_came_back(server: PrivateRedis, engine: Engine) -> None:
    """A subscription that failed while Redis was down leaves no state that stops later ones."""
    lock = name()
    held = await engine.backend.acquire(lock, owner(), ttl=30.0, wait=0)
    server.stop()
    with pytest.raises(EngineUnavailable):
        await engine.backend.renew(held)  # now no connection is left: the next one is refused
    with pytest.raises(redis.exceptions.ConnectionError):  # the listener's own; acquire translates it
        async with engine.backend.listener.subscribed(engine.backend.keys(lock)[2], b"release"):
            pass
    server.start()
    assert not await _renew_when_up(engine, held)
    held = await engine.backend.acquire(lock, owner(), ttl=30.0, wait=0)
    waiter = asyncio.create_task(engine.backend.acquire(lock, owner(), ttl=30.0, wait=10.0))
    await until(lambda: _subscribed(engine, lock), what="the waiter subscribed")
    assert await engine.backend.release(held)
    grant = await asyncio.wait_for(waiter, 5.0)
    assert grant.token > held.token
    assert await engine.backend.release(grant)
