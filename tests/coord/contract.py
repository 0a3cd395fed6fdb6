"""The lock contract (meshkit.coord.backend's docstring), run against every backend's engine.

A backend's test module subclasses :class:`LockContract` and says three things about its engine::

    class TestRedisLocks(LockContract):
        url = "redis://127.0.0.1:6379/0"

        async def break_lease(self, locks: Locks, held: Held) -> None:
            ...  # end the holder's lease on the engine's side (delete the key, kill the connection)

        async def leftovers(self, locks: Locks, name: str) -> list[str]:
            ...  # what the engine still has for `name` (keys, nodes, rows), fence counters excluded

pytest collects the subclass (its name starts with Test); this module defines no tests itself.
Every test uses a fresh lock name, so backends may share one engine with other tests.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from meshkit.coord.locks import Held, Locks
from meshkit.errors import EngineUnavailable, LockLost, LockTimeout
from tests.helpers import eventually

__all__ = ["LONG_TTL", "CutOffContract", "LockContract", "eventually"]

#: Long enough that no test ever sees a lease run out unless it breaks it on purpose.
LONG_TTL = 30.0


class LockContract:
    url: str = ""

    async def break_lease(self, locks: Locks, held: Held) -> None:
        raise NotImplementedError

    async def leftovers(self, locks: Locks, name: str) -> list[str]:
        raise NotImplementedError

    def open(self) -> Locks:
        return Locks(self.url)

    @pytest.fixture
    def name(self) -> str:
        return f"contract-{uuid.uuid4().hex[:12]}"

    @pytest.fixture
    async def two(self) -> AsyncIterator[tuple[Locks, Locks]]:
        """Two independent Locks objects on the same engine: two processes, as far as it can tell."""
        a, b = self.open(), self.open()
        try:
            yield a, b
        finally:
            await a.close()
            await b.close()

    async def test_a_held_lock_is_not_granted_to_anyone_else(self, two: tuple[Locks, Locks], name: str) -> None:
        a, b = two
        async with a.lock(name, ttl=LONG_TTL, wait=5) as held:
            assert not held.lost.is_set()
            with pytest.raises(LockTimeout):
                await b.acquire(name, ttl=LONG_TTL, wait=0)
        second = await b.acquire(name, ttl=LONG_TTL, wait=5)
        await second.release()
        assert await self.leftovers(b, name) == []

    async def test_tokens_grow_with_every_grant_whoever_holds(self, two: tuple[Locks, Locks], name: str) -> None:
        a, b = two
        tokens = []
        for locks in (a, b, a, b, b):
            held = await locks.acquire(name, ttl=LONG_TTL, wait=5)
            tokens.append(held.token)
            await held.release()
        assert tokens == sorted(tokens) and len(set(tokens)) == len(tokens), tokens

    async def test_a_finite_wait_ends_with_lock_timeout(self, two: tuple[Locks, Locks], name: str) -> None:
        a, b = two
        loop = asyncio.get_running_loop()
        async with a.lock(name, ttl=LONG_TTL, wait=5):
            started = loop.time()
            with pytest.raises(LockTimeout):
                await b.acquire(name, ttl=LONG_TTL, wait=1.0)
            assert loop.time() - started >= 0.9  # it did wait (within the engine's granularity)
        assert await self.leftovers(b, name) == []

    async def test_a_release_hands_the_lock_to_a_waiter_without_waiting_for_the_ttl(
        self, two: tuple[Locks, Locks], name: str
    ) -> None:
        a, b = two
        loop = asyncio.get_running_loop()
        first = await a.acquire(name, ttl=LONG_TTL, wait=5)
        waiter = asyncio.create_task(b.acquire(name, ttl=LONG_TTL, wait=LONG_TTL))
        await asyncio.sleep(0.2)  # let the waiter start waiting (not needed for correctness)
        assert not waiter.done()
        released_at = loop.time()
        await first.release()
        second = await waiter
        # By notification: well before the first holder's TTL would have freed it.
        assert loop.time() - released_at < LONG_TTL / 3
        assert second.token > first.token
        await second.release()

    async def test_a_lease_broken_on_the_engine_cancels_the_body_with_lock_lost(
        self, two: tuple[Locks, Locks], name: str
    ) -> None:
        a, b = two
        ttl = 3.0
        body_reached_end = False
        with pytest.raises(LockLost):
            async with a.lock(name, ttl=ttl, wait=5) as held:
                await self.break_lease(a, held)
                await asyncio.wait_for(held.lost.wait(), timeout=ttl * 3)
                await asyncio.sleep(5)  # the watchdog cancels this
                body_reached_end = True
        assert not body_reached_end
        other = await b.acquire(name, ttl=LONG_TTL, wait=ttl * 3)
        assert other.token > held.token
        await other.release()

    async def test_releasing_a_lost_lock_is_reported(self, two: tuple[Locks, Locks], name: str) -> None:
        a, _ = two
        held = await a.acquire(name, ttl=3.0, wait=5)
        await self.break_lease(a, held)
        await asyncio.wait_for(held.lost.wait(), timeout=10)
        with pytest.raises(LockLost):
            await held.release()

    async def test_cancelled_and_timed_out_waiters_leave_nothing_behind(
        self, two: tuple[Locks, Locks], name: str
    ) -> None:
        a, b = two
        holder = await a.acquire(name, ttl=LONG_TTL, wait=5)
        waiters = [asyncio.create_task(b.acquire(name, ttl=LONG_TTL, wait=LONG_TTL)) for _ in range(20)]
        await asyncio.sleep(0.3)  # let them start waiting (not needed for correctness)
        for task in waiters:
            task.cancel()
        results = await asyncio.gather(*waiters, return_exceptions=True)
        assert all(isinstance(r, asyncio.CancelledError) for r in results), results
        with pytest.raises(LockTimeout):
            await b.acquire(name, ttl=LONG_TTL, wait=0.5)
        await holder.release()
        await eventually(lambda: self._nothing_left(b, name), what=f"engine cleanup of {name}")
        # ... and the lock is free: nobody cancelled is holding it.
        again = await b.acquire(name, ttl=LONG_TTL, wait=0)
        await again.release()

    async def _nothing_left(self, locks: Locks, name: str) -> bool:
        return await self.leftovers(locks, name) == []


class _RenewalsFail:
    """A backend that grants and releases through ``backend`` but whose renewals fail as if the
    engine could not be reached: a holder cut off from it. On the engine its lease runs out."""

    def __init__(self, backend: Any) -> None:
        self._backend = backend

    async def acquire(self, name: str, owner: str, ttl: float, wait: float | None, value: bytes = b"") -> Any:
        return await self._backend.acquire(name, owner, ttl, wait, value)

    async def renew(self, grant: Any) -> bool:
        raise EngineUnavailable("cut off from the engine (a test's partition)")

    async def release(self, grant: Any) -> bool:
        return bool(await self._backend.release(grant))

    async def close(self) -> None:
        """The backend is closed by the Locks that made it."""


class CutOffContract(LockContract):
    """For the engines whose lease ends without renewals (a key's expiry, an idle connection's
    timeout, a lease's TTL): a holder whose renewals fail stops believing it holds the lock before
    anyone else is granted it. (ZooKeeper's lease is its client's session, which failing renewals
    do not end: tests/coord/test_zookeeper_session_ends.py covers it.)"""

    #: The ttl the test grants with, in seconds; an engine that counts its leases in whole
    #: seconds (MariaDB's wait_timeout, etcd's lease TTL) rounds it up, which only widens the margin.
    cut_off_ttl = 2.0

    async def test_a_holder_cut_off_from_the_engine_stops_believing_before_the_next_is_granted(
        self, two: tuple[Locks, Locks], name: str
    ) -> None:
        a, b = two
        loop = asyncio.get_running_loop()
        cut_off = Locks(self.url, backend=_RenewalsFail(a.backend))  # type: ignore[arg-type]
        held = await cut_off.acquire(name, ttl=self.cut_off_ttl, wait=5)
        following = await b.acquire(name, ttl=LONG_TTL, wait=self.cut_off_ttl * 10)
        granted_at = loop.time()
        margin = granted_at - held.valid_until
        print(
            f"\n{self.url.split('://')[0]}:// cut-off holder, ttl {self.cut_off_ttl:g} s: the next was granted "
            f"{margin * 1000:.0f} ms after it stopped believing"
        )
        assert margin >= 0, f"the next holder was granted {-margin:.3f} s before the cut-off one stopped believing"
        assert following.token > held.token
        await eventually(lambda: held.lost.is_set(), what="the cut-off holder declared its lock lost")
        with pytest.raises(LockLost):
            await held.release()
        await following.release()
