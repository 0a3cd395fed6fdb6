"""The Redis lock backend against the shared Redis: exclusion, tokens, waiting, renewal, errors.

Each test works under a prefix of its own and checks on the engine (SCAN, PUBSUB NUMSUB) what the
backend left there: only a name's fence counter outlives its holder.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from collections.abc import AsyncIterator

import pytest

from meshkit.coord.redis import MAX_CONNECTIONS, open_redis
from meshkit.errors import BadLockRequest, EngineUnavailable, LockTimeout, StatusCode
from meshkit.schemes import BackendURL
from tests.coord.redis_helpers import Engine, name, open_engine, owner, until
from tests.resilience.redis_engine import closed_port


@pytest.fixture
async def engine() -> AsyncIterator[Engine]:
    async for opened in open_engine():
        yield opened


async def test_a_held_name_is_not_granted_to_another(engine: Engine) -> None:
    lock = name()
    first = await engine.backend.acquire(lock, owner(), ttl=10.0, wait=0)
    with pytest.raises(LockTimeout):
        await engine.backend.acquire(lock, owner(), ttl=10.0, wait=0)
    held = await engine.raw.hgetall(engine.backend.keys(lock)[0])
    assert held[b"owner"].decode() == first.owner
    assert int(held[b"token"]) == first.token
    assert await engine.backend.release(first)
    assert await engine.keys() == {engine.backend.keys(lock)[1]}, "only the fence counter outlives the holder"


async def test_tokens_grow_strictly_across_holders(engine: Engine) -> None:
    lock = name()
    tokens = []
    for _ in range(20):
        grant = await engine.backend.acquire(lock, owner(), ttl=10.0, wait=0)
        tokens.append(grant.token)
        assert await engine.backend.release(grant)
    assert all(a < b for a, b in itertools.pairwise(tokens)), tokens
    assert int(await engine.raw.get(engine.backend.keys(lock)[1])) == tokens[-1]


async def test_tokens_grow_even_when_the_fence_counter_was_lost(engine: Engine) -> None:
    """A restart without persistence loses the counter; the token still grows (server clock floor)."""
    lock = name()
    first = await engine.backend.acquire(lock, owner(), ttl=10.0, wait=0)
    assert await engine.backend.release(first)
    await engine.raw.delete(engine.backend.keys(lock)[1])
    second = await engine.backend.acquire(lock, owner(), ttl=10.0, wait=0)
    assert second.token > first.token
    assert await engine.backend.release(second)


async def test_wait_zero_fails_at_once(engine: Engine) -> None:
    lock = name()
    held = await engine.backend.acquire(lock, owner(), ttl=10.0, wait=0)
    started = time.monotonic()
    with pytest.raises(LockTimeout, match="within 0s"):
        await engine.backend.acquire(lock, owner(), ttl=10.0, wait=0)
    assert time.monotonic() - started < 0.5
    assert await engine.subscribers(lock) == 0, "trying once subscribes to nothing"
    assert await engine.backend.release(held)


async def test_a_finite_wait_times_out_and_leaves_nothing(engine: Engine) -> None:
    lock = name()
    held = await engine.backend.acquire(lock, owner(), ttl=10.0, wait=0)
    started = time.monotonic()
    with pytest.raises(LockTimeout):
        await engine.backend.acquire(lock, owner(), ttl=10.0, wait=0.3)
    elapsed = time.monotonic() - started
    assert 0.3 <= elapsed < 2.0, elapsed
    await until(lambda: _unsubscribed(engine, lock), what="the channel unsubscribed")
    assert await engine.keys() == set(engine.backend.keys(lock)[:2])
    assert await engine.backend.release(held)


async def test_a_release_wakes_a_waiter_long_before_the_ttl(engine: Engine) -> None:
    lock = name()
    held = await engine.backend.acquire(lock, owner(), ttl=10.0, wait=0)
    waiter = asyncio.create_task(engine.backend.acquire(lock, owner(), ttl=10.0, wait=10.0))
    await until(lambda: _subscribed(engine, lock), what="the waiter subscribed")
    released = time.monotonic()
    assert await engine.backend.release(held)
    grant = await asyncio.wait_for(waiter, 5.0)
    assert time.monotonic() - released < 1.0, "the release notified the waiter; it did not wait for the TTL"
    assert grant.token > held.token
    assert await engine.backend.holder(lock) is not None
    assert await engine.backend.release(grant)
    await until(lambda: _unsubscribed(engine, lock), what="the channel unsubscribed")


async def test_a_dead_holders_name_is_taken_when_its_lease_runs_out(engine: Engine) -> None:
    """A holder that never releases (it crashed) never publishes: the waiter wakes at its PTTL."""
    lock = name()
    dead = await engine.backend.acquire(lock, owner(), ttl=0.5, wait=0)
    started = time.monotonic()
    grant = await engine.backend.acquire(lock, owner(), ttl=10.0, wait=5.0)
    elapsed = time.monotonic() - started
    assert 0.3 < elapsed < 1.5, elapsed
    assert grant.token > dead.token
    assert await engine.backend.release(grant)


async def test_renew_extends_the_lease(engine: Engine) -> None:
    lock = name()
    grant = await engine.backend.acquire(lock, owner(), ttl=10.0, wait=0)
    key = engine.backend.keys(lock)[0]
    await engine.raw.pexpire(key, 1000)  # as if most of the lease had passed
    assert await engine.backend.renew(grant)
    assert await engine.raw.pttl(key) > 9000
    assert await engine.backend.release(grant)


async def test_renew_and_release_after_expiry_and_takeover_are_refused(engine: Engine) -> None:
    lock = name()
    old = await engine.backend.acquire(lock, owner(), ttl=10.0, wait=0)
    await engine.raw.pexpire(engine.backend.keys(lock)[0], 1)  # the lease runs out
    new = await engine.backend.acquire(lock, owner(), ttl=10.0, wait=5.0)
    assert not await engine.backend.renew(old)
    assert not await engine.backend.release(old)
    holder = await engine.backend.holder(lock)
    assert holder is not None and holder.owner == new.owner, "the old holder touched nothing of its successor's"
    assert await engine.backend.release(new)


async def test_a_cancelled_waiter_leaves_only_the_fence_counter(engine: Engine) -> None:
    lock = name()
    held = await engine.backend.acquire(lock, owner(), ttl=10.0, wait=0)
    waiter = asyncio.create_task(engine.backend.acquire(lock, owner(), ttl=10.0, wait=None))
    await until(lambda: _subscribed(engine, lock), what="the waiter subscribed")
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    await until(lambda: _unsubscribed(engine, lock), what="the channel unsubscribed")
    assert await engine.keys() == set(engine.backend.keys(lock)[:2])
    assert await engine.backend.release(held)
    assert await engine.keys() == {engine.backend.keys(lock)[1]}


async def test_400_cancelled_waits_leave_nothing_behind(engine: Engine) -> None:
    lock = name()
    held = await engine.backend.acquire(lock, owner(), ttl=30.0, wait=0)
    await until(lambda: _unsubscribed(engine, lock), what="the channel unsubscribed")
    clients = len(await engine.raw.client_list())
    waiters = [asyncio.create_task(engine.backend.acquire(lock, owner(), ttl=10.0, wait=30.0)) for _ in range(400)]
    await until(lambda: _subscribed(engine, lock), what="the waiters subscribed")
    await until(lambda: _waiting(engine, lock, 400), what="400 waiters waiting")
    opened = len(await engine.raw.client_list()) - clients
    assert opened <= MAX_CONNECTIONS, f"{opened} connections for 400 waiters: the pool and one pub/sub connection"
    for waiter in waiters:
        waiter.cancel()
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert all(isinstance(result, asyncio.CancelledError) for result in results)
    await until(lambda: _unsubscribed(engine, lock), what="the channel unsubscribed")
    assert await engine.keys() == set(engine.backend.keys(lock)[:2])
    assert (await engine.raw.hgetall(engine.backend.keys(lock)[0]))[b"owner"].decode() == held.owner
    assert await engine.backend.release(held)
    assert await engine.keys() == {engine.backend.keys(lock)[1]}


async def test_attempts_cancelled_at_any_moment_hold_nothing(engine: Engine) -> None:
    """An attempt on a free name cancelled while its grant script runs gives back what it may
    have been granted: nothing stays held by a caller that never got a Grant."""
    lock = name()
    for i in range(200):
        attempt = asyncio.create_task(engine.backend.acquire(lock, owner(), ttl=30.0, wait=None))
        for _ in range(i % 4):
            await asyncio.sleep(0)
        attempt.cancel()
        try:
            grant = await attempt
        except asyncio.CancelledError:
            continue
        assert await engine.backend.release(grant)
    assert await engine.backend.holder(lock) is None
    assert await engine.keys() <= {engine.backend.keys(lock)[1]}
    await until(lambda: _unsubscribed(engine, lock), what="the channel unsubscribed")


async def test_an_unreachable_redis_is_engine_unavailable_naming_it() -> None:
    port = closed_port()
    backend = open_redis(BackendURL.parse(f"redis://127.0.0.1:{port}/0"))
    try:
        started = time.monotonic()
        with pytest.raises(EngineUnavailable, match=rf"127\.0\.0\.1:{port}.*scripts/engines\.sh") as caught:
            await backend.acquire(name(), owner(), ttl=10.0, wait=5.0)
        assert caught.value.code == StatusCode.UNAVAILABLE
        assert time.monotonic() - started < 2.0, "a refused connection is not retried for the whole wait"
    finally:
        await backend.close()


async def test_bad_credentials_are_engine_unavailable_unauthenticated(engine: Engine) -> None:
    backend = open_redis(BackendURL.parse("redis://nobody-here:wrong@127.0.0.1:6379/0"))
    try:
        with pytest.raises(EngineUnavailable, match=re.escape("127.0.0.1:6379 refused our credentials")) as caught:
            await backend.acquire(name(), owner(), ttl=10.0, wait=0)
        assert caught.value.code == StatusCode.UNAUTHENTICATED
    finally:
        await backend.close()


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/zero",
        "redis://127.0.0.1:6379/0?prefx=a:",
        "redis://127.0.0.1:6379/0?timeout=soon",
        "redis://127.0.0.1:6379/0?max_connections=1",
        "redis://127.0.0.1:6379/0?timeout=0",
    ],
)
def test_a_url_it_cannot_use_is_a_bad_lock_request(url: str) -> None:
    with pytest.raises(BadLockRequest, match="URL"):
        open_redis(BackendURL.parse(url))


async def _subscribed(engine: Engine, lock: str, count: int = 1) -> bool:
    return await engine.subscribers(lock) >= count


async def _unsubscribed(engine: Engine, lock: str) -> bool:
    return await engine.subscribers(lock) == 0


async def _waiting(engine: Engine, lock: str, count: int) -> bool:
    """``count`` waiters are subscribed (through the backend's one pub/sub connection)."""
    return engine.backend.listener.subscribers(engine.backend.keys(lock)[2]) == count
