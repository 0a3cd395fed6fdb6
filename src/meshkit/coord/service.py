"""The lock service meshkit's built-in registry serves: memory:// locks, reachable over meshkit RPC.

``meshkit registry`` (and the demo's registry) adds :class:`CoordService` to its server, so a
system that runs the built-in registry has locks and elections without another engine:
``Locks("meshkit://127.0.0.1:7070")``, ``Election("meshkit://…", "scheduler")``. The state is the
registry process's memory (:mod:`meshkit.coord.memory`); :mod:`meshkit.coord.builtin` is the
client. What that means for the guarantees (docs/coordination.md):

- one registry process is the authority: locks are not replicated (several registry servers are
  tried in order, as the registry client does, but a lock taken on one is unknown to another);
- a registry restart forgets every holder (their next renewal says "not yours": ``lost``), but
  fencing tokens keep growing across it, since they are taken from the wall clock in
  microseconds (``MemoryLocks(clock_tokens=True)``);
- a waiter's call blocks in the registry until granted; cancelling the call (a CANCEL frame)
  removes the waiter there.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import msgspec

from meshkit.coord.backend import Grant
from meshkit.coord.memory import MemoryLocks
from meshkit.coord.names import check_name, check_ttl, check_wait
from meshkit.rpc.service import Service, rpc

#: The service's name on the wire (and in the registry server's routes).
SERVICE_NAME = "meshkit.coord"


class Granted(msgspec.Struct):
    """An acquire's answer: the token, and how long the registry held the call before granting
    (the client counts the lease from its send time plus that, not from before it waited)."""

    token: int
    waited: float


class HolderInfo(msgspec.Struct):
    owner: str
    value: bytes
    token: int


class CoordService(Service, name=SERVICE_NAME):
    """Locks and elections in this process's memory, for meshkit:// clients."""

    def __init__(self, space: str | None = None) -> None:
        self.locks = MemoryLocks(space if space is not None else f"coord-service-{id(self)}", clock_tokens=True)

    @rpc
    async def acquire(
        self, name: str, owner: str, ttl: float, wait: float | None = None, value: bytes = b""
    ) -> Granted:
        """Grant ``name`` to ``owner``; the call lasts as long as the wait (LockTimeout after it)."""
        name, ttl, wait = check_name(name), check_ttl(ttl), check_wait(wait)
        loop = asyncio.get_running_loop()
        started = loop.time()
        grant = await self.locks.acquire(name, owner, ttl, wait, value)
        return Granted(grant.token, loop.time() - started)

    @rpc
    async def renew(self, name: str, owner: str, ttl: float) -> bool:
        return await self.locks.renew(Grant(check_name(name), owner, 0, check_ttl(ttl)))

    @rpc
    async def release(self, name: str, owner: str) -> bool:
        return await self.locks.release(Grant(check_name(name), owner, 0, 1.0))

    @rpc(idempotent=True)
    async def holder(self, name: str) -> HolderInfo | None:
        held = await self.locks.holder(check_name(name))
        return None if held is None else HolderInfo(held.owner, held.value, held.token)

    @rpc
    async def watch(self, name: str) -> AsyncIterator[HolderInfo | None]:
        """The holder of ``name`` now, then again after every change."""
        async for held in self.locks.watch(check_name(name)):
            yield None if held is None else HolderInfo(held.owner, held.value, held.token)
