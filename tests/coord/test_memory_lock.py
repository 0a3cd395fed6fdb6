"""memory:// keeps the lock contract inside one process (tests/coord/contract.py)."""

from __future__ import annotations

from meshkit.coord import memory
from meshkit.coord.locks import Held, Locks
from tests.coord.contract import CutOffContract


class TestMemoryLocks(CutOffContract):
    url = "memory://contract"

    async def break_lease(self, locks: Locks, held: Held) -> None:
        state = memory._spaces["contract"][held.name]
        state.holder = None  # as if the lease ran out on the engine while the holder slept

    async def leftovers(self, locks: Locks, name: str) -> list[str]:
        state = memory._spaces["contract"].get(name)
        if state is None:
            return []
        left = []
        if state.holder is not None:
            left.append(f"holder {state.holder.owner}")
        left += [f"waiter {w!r}" for w in state.waiters if not w.done()]
        return left
