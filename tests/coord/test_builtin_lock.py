"""meshkit:// — locks and elections served by the built-in registry — keeps both contracts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from meshkit import Server
from meshkit.coord import memory
from meshkit.coord.election import Election, Term
from meshkit.coord.locks import Held, Locks
from meshkit.coord.service import CoordService
from meshkit.errors import EngineUnavailable
from tests.coord.contract import CutOffContract
from tests.coord.election_contract import ElectionContract
from tests.resilience.redis_engine import closed_port


@pytest.fixture
async def registry() -> AsyncIterator[tuple[str, CoordService]]:
    service = CoordService("registry")
    async with Server([service], host="127.0.0.1", port=0, middleware=[]) as server:
        yield f"meshkit://127.0.0.1:{server.port}", service


def _forget(service_space: str, name: str) -> None:
    state = memory._spaces[service_space][name]
    memory.MemoryLocks(service_space)._set_holder(state, None)  # the registry forgot it (a restart)


class TestBuiltinLocks(CutOffContract):
    @pytest.fixture(autouse=True)
    def _url(self, registry: tuple[str, CoordService]) -> None:
        self.url = registry[0]

    async def break_lease(self, locks: Locks, held: Held) -> None:
        _forget("registry", held.name)

    async def leftovers(self, locks: Locks, name: str) -> list[str]:
        state = memory._spaces["registry"].get(name)
        if state is None:
            return []
        return ([f"holder {state.holder.owner}"] if state.holder else []) + [
            f"waiter {w!r}" for w in state.waiters if not w.done()
        ]


class TestBuiltinElection(ElectionContract):
    ttl = 1.5

    @pytest.fixture(autouse=True)
    def _url(self, registry: tuple[str, CoordService]) -> None:
        self.url = registry[0]

    async def break_lease(self, election: Election, term: Term) -> None:
        _forget("registry", term.name)


async def test_tokens_keep_growing_across_a_registry_restart() -> None:
    first_service = CoordService("before")
    async with Server([first_service], host="127.0.0.1", port=0, middleware=[]) as server:
        async with Locks(f"meshkit://127.0.0.1:{server.port}") as locks:
            before = await locks.acquire("job", wait=0)
            await before.release()
    memory.reset()  # the registry process is gone, and its memory with it
    async with Server([CoordService("after")], host="127.0.0.1", port=0, middleware=[]) as server:
        async with Locks(f"meshkit://127.0.0.1:{server.port}") as locks:
            after = await locks.acquire("job", wait=0)
            await after.release()
    assert after.token > before.token


async def test_an_unreachable_registry_is_engine_unavailable_with_how_to_start_one() -> None:
    port = closed_port()
    async with Locks(f"meshkit://127.0.0.1:{port}") as locks:
        with pytest.raises(EngineUnavailable, match=rf"127.0.0.1:{port} is unreachable.*meshkit registry"):
            await locks.acquire("job", wait=0)


async def test_two_registries_are_an_authority_and_its_stand_in_never_two_lock_tables() -> None:
    """``meshkit://A,B``: concurrent acquires all go to A (spreading them would let two holders
    take one name, one on each registry); B serves only while A is down."""
    first, second = CoordService("authority"), CoordService("stand-in")
    async with (
        Server([first], host="127.0.0.1", port=0, middleware=[]) as a,
        Server([second], host="127.0.0.1", port=0, middleware=[]) as b,
    ):
        async with Locks(f"meshkit://127.0.0.1:{a.port},127.0.0.1:{b.port}") as locks:
            held = await asyncio.gather(*(locks.acquire(f"job-{i % 4}-{i}", ttl=10, wait=0) for i in range(40)))
            assert len(memory._spaces["authority"]) == 40
            assert not memory._spaces.get("stand-in"), "a lock was taken on the stand-in"
            for h in held:
                await h.release()
