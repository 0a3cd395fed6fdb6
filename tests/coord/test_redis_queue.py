"""Redis waiting is FIFO with direct hand-off: a release grants the name to the first live waiter
of its queue, a dead waiter (its ticket expired) is skipped, a releaser taking the name straight
back queues behind the others, and trying once never jumps the queue."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator

import pytest

from meshkit.coord.redis import TICKET
from meshkit.coord.redis_listener import Subscription
from meshkit.errors import LockTimeout
from tests.coord.redis_helpers import Engine, name, open_engine, owner, until


@pytest.fixture
async def engine() -> AsyncIterator[Engine]:
    async for opened in open_engine():
        yield opened


async def _queued(engine: Engine, lock: str) -> list[str]:
    return [entry.decode() for entry in await engine.raw.lrange(engine.backend.queue_keys(lock)[0], 0, -1)]


async def test_five_waiters_are_granted_in_the_order_they_queued(engine: Engine) -> None:
    lock = name()
    held = await engine.backend.acquire(lock, owner(), ttl=10.0, wait=0)
    order: list[int] = []
    owners = [owner() for _ in range(5)]

    async def waiter(number: int) -> None:
        grant = await engine.backend.acquire(lock, owners[number], ttl=10.0, wait=10.0)
        order.append(number)
        await asyncio.sleep(0.01)  # the others keep waiting meanwhile
        assert await engine.backend.release(grant)

    tasks = []
    for number in range(5):
        tasks.append(asyncio.create_task(waiter(number)))
        await until(lambda n=number: _has_queued(engine, lock, n + 1), what=f"waiter {number} queued")
    assert await _queued(engine, lock) == owners
    assert await engine.backend.release(held)
    await asyncio.wait_for(asyncio.gather(*tasks), 10.0)
    assert order == [0, 1, 2, 3, 4]
    assert await engine.keys() == {engine.backend.keys(lock)[1]}, "no queue and no ticket left behind"


async def _has_queued(engine: Engine, lock: str, count: int) -> bool:
    return len(await _queued(engine, lock)) == count


async def test_dead_waiters_are_skipped_by_the_hand_off(engine: Engine) -> None:
    """Queue entries whose ticket is gone (never written, or expired: the waiter died without
    leaving) are dropped; the first live waiter is granted at once, not after anyone's ttl."""
    lock = name()
    queue, tickets = engine.backend.queue_keys(lock)
    held = await engine.backend.acquire(lock, owner(), ttl=30.0, wait=0)
    ghost, lapsed = owner(), owner()
    await engine.raw.rpush(queue, ghost, lapsed)
    await engine.raw.hset(tickets + lapsed, mapping={"ttl": 30000, "value": ""})
    await engine.raw.pexpire(tickets + lapsed, 20)
    live = asyncio.create_task(engine.backend.acquire(lock, owner(), ttl=10.0, wait=10.0))
    await until(lambda: _has_queued(engine, lock, 3), what="the live waiter queued behind the dead")
    await asyncio.sleep(0.05)  # the lapsed ticket expires
    assert await engine.backend.release(held)
    grant = await asyncio.wait_for(live, 1.0)
    assert grant.token > held.token
    assert await engine.backend.release(grant)
    assert await engine.keys() == {engine.backend.keys(lock)[1]}


async def test_a_waiter_whose_ticket_lapsed_loses_its_place_not_its_wait(engine: Engine) -> None:
    lock = name()
    _, tickets = engine.backend.queue_keys(lock)
    held = await engine.backend.acquire(lock, owner(), ttl=30.0, wait=0)
    first, second = owner(), owner()
    a = asyncio.create_task(engine.backend.acquire(lock, first, ttl=10.0, wait=10.0))
    await until(lambda: _has_queued(engine, lock, 1), what="the first waiter queued")
    b = asyncio.create_task(engine.backend.acquire(lock, second, ttl=10.0, wait=10.0))
    await until(lambda: _has_queued(engine, lock, 2), what="the second waiter queued")
    await engine.raw.delete(tickets + first)  # as if it had stopped refreshing for a ticket
    assert await engine.backend.release(held)
    grant = await asyncio.wait_for(b, 2.0)
    assert not a.done(), "the first waiter lost its place"
    assert await engine.backend.release(grant)
    # Its next refresh (every TICKET/3) queues it again, at the back: it is granted then.
    grant = await asyncio.wait_for(a, TICKET)
    assert await engine.backend.release(grant)
    assert await engine.keys() == {engine.backend.keys(lock)[1]}


async def test_trying_once_never_jumps_the_queue(engine: Engine) -> None:
    lock = name()
    held = await engine.backend.acquire(lock, owner(), ttl=30.0, wait=0)
    waiter = asyncio.create_task(engine.backend.acquire(lock, owner(), ttl=10.0, wait=10.0))
    await until(lambda: _has_queued(engine, lock, 1), what="the waiter queued")
    await engine.raw.pexpire(engine.backend.keys(lock)[0], 1)  # the holder's lease runs out
    await asyncio.sleep(0.01)
    with pytest.raises(LockTimeout):
        await engine.backend.acquire(lock, owner(), ttl=10.0, wait=0)  # hands it to the waiter
    grant = await asyncio.wait_for(waiter, 2.0)
    assert not await engine.backend.release(held), "its lease had run out"
    assert await engine.backend.release(grant)
    assert await engine.keys() == {engine.backend.keys(lock)[1]}


async def test_a_releaser_looping_cannot_starve_the_others(engine: Engine) -> None:
    """8 tasks each take the name, release it and ask again at once: FIFO queues each one behind
    the others, so every grant after the first few goes to another task than the last."""
    lock = name()
    loop = asyncio.get_running_loop()
    end = loop.time() + 1.0
    grants: list[int] = []

    async def worker(number: int) -> None:
        while loop.time() < end:
            grant = await engine.backend.acquire(lock, owner(), ttl=10.0, wait=10.0)
            grants.append(number)
            assert await engine.backend.release(grant)

    await asyncio.wait_for(asyncio.gather(*(worker(n) for n in range(8))), 15.0)
    counts = [grants.count(n) for n in range(8)]
    assert min(counts) >= 10, counts
    assert max(counts) <= min(counts) * 1.1 + 2, f"round robin: {counts}"
    steady = grants[8:-8]  # the last ones: tasks whose time is up stop queueing
    repeats = sum(1 for a, b in itertools.pairwise(steady) if a == b)
    assert repeats == 0, f"{repeats} grants went straight back to the releaser"
    assert await engine.keys() == {engine.backend.keys(lock)[1]}


async def test_a_waiter_cancelled_as_it_is_handed_the_name_hands_it_on(engine: Engine) -> None:
    lock = name()
    held = await engine.backend.acquire(lock, owner(), ttl=30.0, wait=0)
    first = asyncio.create_task(engine.backend.acquire(lock, owner(), ttl=30.0, wait=10.0))
    await until(lambda: _has_queued(engine, lock, 1), what="the first waiter queued")
    second = asyncio.create_task(engine.backend.acquire(lock, owner(), ttl=30.0, wait=10.0))
    await until(lambda: _has_queued(engine, lock, 2), what="the second waiter queued")
    assert await engine.backend.release(held)  # handed to the first, which is cancelled at once
    first.cancel()
    try:
        grant = await first
    except asyncio.CancelledError:
        pass
    else:  # it had confirmed the hand-off before the cancellation reached it
        assert await engine.backend.release(grant)
    grant = await asyncio.wait_for(second, 2.0)
    assert await engine.backend.release(grant)
    assert await engine.keys() == {engine.backend.keys(lock)[1]}


class _CountingGrants:
    """Counts the grant script's runs of one backend (it is called as ``_grant(keys=, args=)``)."""

    def __init__(self, engine: Engine) -> None:
        self.runs = 0
        self._script = engine.backend._grant
        engine.backend._grant = self  # type: ignore[assignment]

    async def __call__(self, **kwargs: object) -> object:
        self.runs += 1
        return await self._script(**kwargs)


async def _seen(subscription: Subscription, data: str) -> None:
    """Until the last message ``subscription`` got is ``data`` (wake-ups coalesce: look at it)."""
    while subscription.message != data.encode():
        await subscription.event.wait()
        subscription.event.clear()


async def _yield_to_others(times: int = 5) -> None:
    """Let the tasks that are ready run (no time passes: nothing here waits on I/O)."""
    for _ in range(times):
        await asyncio.sleep(0)


async def test_a_handed_off_grant_is_taken_from_the_release_message_without_another_round_trip(engine: Engine) -> None:
    lock = name()
    held = await engine.backend.acquire(lock, owner(), ttl=10.0, wait=0)
    waiting = asyncio.create_task(engine.backend.acquire(lock, owner(), ttl=10.0, wait=10.0))
    await until(lambda: _has_queued(engine, lock, 1), what="the waiter queued")
    grants = _CountingGrants(engine)
    assert await engine.backend.release(held)
    grant = await asyncio.wait_for(waiting, 10.0)
    assert grants.runs == 0, "the waiter asked Redis again after the hand-off message told it all"
    holder = await engine.backend.holder(lock)
    assert holder is not None and (holder.owner, holder.token) == (grant.owner, grant.token)
    assert grant.token > held.token
    assert await engine.backend.release(grant)


async def test_a_stale_hand_off_message_is_not_taken_for_a_grant(engine: Engine) -> None:
    """A ``granted:<owner>:<token>`` whose token is not above the last one the waiter's latest
    attempt saw was granted before that attempt (a grant of ours that lapsed since, delivered
    late): it must not make the waiter believe it holds the name."""
    lock = name()
    held = await engine.backend.acquire(lock, owner(), ttl=30.0, wait=0)
    me = owner()
    waiting = asyncio.create_task(engine.backend.acquire(lock, me, ttl=30.0, wait=10.0))
    await until(lambda: _has_queued(engine, lock, 1), what="the waiter queued")
    channel = engine.backend.keys(lock)[2]
    async with engine.backend.listener.subscribed(channel) as seen:  # the waiter's listener, same order
        await engine.raw.publish(channel, f"granted:{me}:not-a-token")  # ignored just as well
        stale = f"granted:{me}:{held.token}"
        await engine.raw.publish(channel, stale)
        await asyncio.wait_for(_seen(seen, stale), 5.0)
    await _yield_to_others()
    assert not waiting.done(), "a stale hand-off message was taken for a grant"
    assert await engine.backend.release(held)
    grant = await asyncio.wait_for(waiting, 10.0)
    holder = await engine.backend.holder(lock)
    assert holder is not None and (holder.owner, holder.token) == (me, grant.token)
    assert grant.token > held.token
    assert await engine.backend.release(grant)


async def test_a_hand_off_that_leaves_too_little_of_the_lease_is_confirmed_with_the_engine(engine: Engine) -> None:
    """The lease of a handed-off grant is reckoned from the waiter's last refused attempt; when
    less than a third of the ttl is left by that reckoning the waiter runs the grant script,
    which extends the lease from then, instead of starting with a lease about to end."""
    lock = name()
    held = await engine.backend.acquire(lock, owner(), ttl=30.0, wait=0)
    waiting = asyncio.create_task(engine.backend.acquire(lock, owner(), ttl=0.3, wait=10.0))
    await until(lambda: _has_queued(engine, lock, 1), what="the waiter queued")
    grants = _CountingGrants(engine)
    loop = asyncio.get_running_loop()
    start = loop.time()
    await until(lambda: _after(loop, start + 0.1), what="a third of the waiter's ttl passed")
    assert await engine.backend.release(held)
    grant = await asyncio.wait_for(waiting, 10.0)
    assert grants.runs >= 1, "the waiter took a lease it could not prove a third of was left"
    assert grant.sent_at >= start + 0.1
    assert await engine.backend.release(grant)


async def _after(loop: asyncio.AbstractEventLoop, moment: float) -> bool:
    return loop.time() >= moment
