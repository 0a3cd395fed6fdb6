"""What Locks adds on top of every backend: checks, the watchdog, and losing a lease safely."""

from __future__ import annotations

import asyncio

import pytest

from meshkit.coord import memory
from meshkit.coord.locks import Locks
from meshkit.errors import BadLockRequest, EngineUnavailable, LockLost, StatusCode
from tests.coord.contract import eventually


class FlakyEngine(memory.MemoryLocks):
    """memory:// whose renewals can be made to fail as if the engine were unreachable."""

    def __init__(self) -> None:
        super().__init__("flaky")
        self.down = False
        self.renewals = 0

    async def renew(self, grant: memory.Grant) -> bool:
        self.renewals += 1
        if self.down:
            raise EngineUnavailable("engine at 127.0.0.1:1 is down")
        return await super().renew(grant)

    async def release(self, grant: memory.Grant) -> bool:
        if self.down:
            raise EngineUnavailable("engine at 127.0.0.1:1 is down")
        return await super().release(grant)


def flaky_locks() -> tuple[Locks, FlakyEngine]:
    engine = FlakyEngine()
    return Locks("memory://flaky", backend=engine), engine


@pytest.mark.parametrize(
    ("name", "ttl", "wait", "match"),
    [
        ("", 1, None, "must not be empty"),
        ("x" * 201, 1, None, "201 characters is over the limit of 200"),
        ("has space", 1, None, "space or an unprintable"),
        ("nul\x00", 1, None, "space or an unprintable"),
        (7, 1, None, "a lock name is a str"),
        ("ok", 0, None, "ttl must be above 0"),
        ("ok", -1, None, "ttl must be above 0"),
        ("ok", float("inf"), None, "ttl must be above 0"),
        ("ok", "10", None, "ttl is a number"),
        ("ok", True, None, "ttl is a number"),
        ("ok", 1, -0.5, "wait must be 0"),
        ("ok", 1, float("nan"), "wait must be 0"),
    ],
)
def test_a_bad_request_is_refused_before_any_engine_sees_it(
    name: object, ttl: object, wait: object, match: str
) -> None:
    locks = Locks("memory://")
    with pytest.raises(BadLockRequest, match=match) as info:
        locks.lock(name, ttl=ttl, wait=wait)  # type: ignore[arg-type]
    assert info.value.code is StatusCode.INVALID_ARGUMENT
    assert isinstance(info.value, ValueError)


def test_an_unknown_scheme_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown lock URL 'nope://x'.*memory://"):
        Locks("nope://x")


async def test_the_watchdog_keeps_a_lock_past_its_ttl_while_the_body_runs() -> None:
    locks, engine = flaky_locks()
    other = Locks("memory://flaky")
    async with locks.lock("job", ttl=0.3) as held:
        await eventually(lambda: engine.renewals >= 6, what="six renewals (two TTLs)")
        assert not held.lost.is_set()
        with pytest.raises(Exception, match="not granted"):
            await other.acquire("job", wait=0)
    assert (await other.acquire("job", wait=0)).token == held.token + 1


async def test_renewals_failing_until_the_lease_runs_out_cancel_the_body_with_lock_lost() -> None:
    locks, engine = flaky_locks()
    loop = asyncio.get_running_loop()
    with pytest.raises(LockLost, match="'job'"):
        async with locks.lock("job", ttl=0.5) as held:
            engine.down = True
            taken_down = loop.time()
            await asyncio.sleep(30)  # cancelled by the watchdog
    # Given up no later than the holder's own view of the lease (counted from before the grant).
    assert held.lost.is_set() and loop.time() - taken_down < 0.5 + 0.2


async def test_a_body_that_swallows_the_cancellation_is_cancelled_again() -> None:
    locks, _ = flaky_locks()
    swallowed = 0
    with pytest.raises(LockLost):
        async with locks.lock("job", ttl=0.5) as held:
            memory._spaces["flaky"]["job"].holder = None  # the engine forgot it
            while True:
                try:
                    await asyncio.sleep(30)
                except asyncio.CancelledError:
                    swallowed += 1
                    if swallowed > 1:
                        raise
    assert swallowed == 2 and held.lost.is_set()
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_the_bodys_own_error_passes_through_and_the_lock_is_released() -> None:
    locks = Locks("memory://")
    with pytest.raises(KeyError):
        async with locks.lock("job"):
            raise KeyError("boom")
    again = await locks.acquire("job", wait=0)
    await again.release()


async def test_a_body_cancelled_from_outside_stays_cancelled_and_releases_the_lock() -> None:
    locks = Locks("memory://")
    entered = asyncio.Event()

    async def body() -> None:
        async with locks.lock("job"):
            entered.set()
            await asyncio.sleep(30)

    task = asyncio.create_task(body())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    again = await locks.acquire("job", wait=0)
    await again.release()


async def test_releasing_twice_is_harmless_but_a_lost_lock_never_releases_quietly() -> None:
    locks = Locks("memory://")
    held = await locks.acquire("job")
    await held.release()
    await held.release()
    lost = await locks.acquire("job")
    memory._spaces[""]["job"].holder = None
    with pytest.raises(LockLost, match="was lost before it was released"):
        await lost.release()
    with pytest.raises(LockLost):
        await lost.release()


async def test_a_lost_lock_whose_engine_is_down_still_reports_lock_lost_on_release() -> None:
    locks, engine = flaky_locks()
    held = await locks.acquire("job", ttl=0.3)
    engine.down = True
    await asyncio.wait_for(held.lost.wait(), timeout=5)
    with pytest.raises(LockLost):
        await held.release()


async def test_a_held_lock_whose_engine_is_down_says_so_on_release() -> None:
    locks, engine = flaky_locks()
    held = await locks.acquire("job", ttl=30)
    engine.down = True
    with pytest.raises(EngineUnavailable):
        await held.release()  # not known to be given back: the caller must not think it was
