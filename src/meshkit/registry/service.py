"""The built-in registry as a meshkit service (``meshkit registry --port 7070``).

Instances register with a TTL and renew by heartbeat; a watch is a server stream of snapshots,
the current one first and one after every change of that service. Eviction runs once a second.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable

from meshkit.discovery.instance import Instance
from meshkit.errors import RpcError, StatusCode
from meshkit.registry.preservation import Change
from meshkit.registry.state import RegistryState
from meshkit.rpc.service import Service, rpc

log = logging.getLogger("meshkit.registry")

DEFAULT_TTL = 10.0
MAX_TTL = 3600.0


def _log_change(change: Change, state: RegistryState) -> None:
    """One line when self-preservation starts and one when it ends, never one per round."""
    silent = f"{change.silent} of {change.leases} leases sent no renewal for over 2/3 of their TTL"
    if change.started:
        hold_for = state.preservation.config.hold_for
        log.warning(
            "self-preservation on: %s; holding expired leases for up to %g s instead of evicting them",
            silent,
            hold_for,
        )
    elif change.reason == "recovered":
        log.warning("self-preservation off after %.0f s: renewals recovered (%s)", change.lasted, silent)
    else:
        log.warning("self-preservation off after %.0f s: still %s; evicting the expired ones", change.lasted, silent)


class RegistryService(Service, name="registry"):
    def __init__(
        self,
        state: RegistryState | None = None,
        clock: Callable[[], float] = time.monotonic,
        evict_every: float = 1.0,
    ) -> None:
        self.state = state or RegistryState()
        self._clock = clock
        self._evict_every = evict_every
        self._changed: dict[str, asyncio.Future[None]] = {}
        self._revisions: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        """Start the eviction loop (call once the event loop runs)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._evict_loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _evict_loop(self) -> None:
        while True:
            await asyncio.sleep(self._evict_every)
            self.evict_now()

    def evict_now(self) -> list[Instance]:
        evicted = self.state.evict(self._clock())
        for service in {i.service for i in evicted}:
            self._notify(service)
        for change in self.state.preservation.take_changes():
            _log_change(change, self.state)
        if evicted:
            log.info("evicted %s", ", ".join(f"{i.service}/{i.id}" for i in evicted))
        return evicted

    def service_revision(self, service: str) -> int:
        """Bumped on every change of ``service`` (long-polling HTTP watchers compare it)."""
        return self._revisions.get(service, 0)

    def _notify(self, service: str) -> None:
        self._revisions[service] = self._revisions.get(service, 0) + 1
        fut = self._changed.pop(service, None)
        if fut is not None and not fut.done():
            fut.set_result(None)

    def change_future(self, service: str) -> asyncio.Future[None]:
        return self._change_future(service)

    def _change_future(self, service: str) -> asyncio.Future[None]:
        fut = self._changed.get(service)
        if fut is None or fut.done():
            fut = self._changed[service] = asyncio.get_running_loop().create_future()
        return fut

    # -- RPC ---------------------------------------------------------------------------------
    @rpc
    async def register(self, instance: Instance, ttl: float = DEFAULT_TTL) -> int:
        """Lease ``instance`` for ``ttl`` seconds; returns the lease id to heartbeat."""
        if not 0 < ttl <= MAX_TTL:
            raise RpcError(StatusCode.INVALID_ARGUMENT, f"ttl must be in (0, {MAX_TTL}] seconds, got {ttl}")
        if not instance.service or not instance.host or not 0 < instance.port < 65536:
            raise RpcError(StatusCode.INVALID_ARGUMENT, f"instance needs a service, host and port: {instance}")
        lease = self.state.register(instance, ttl, self._clock())
        self._notify(instance.service)
        return lease

    @rpc
    async def heartbeat(self, leases: list[int]) -> list[int]:
        """Renew leases; returns those this registry does not know (register those again)."""
        now = self._clock()
        return [lease for lease in leases if not self.state.renew(lease, now)]

    @rpc
    async def deregister(self, instance_id: str) -> bool:
        instance = self.state.deregister(instance_id)
        if instance is None:
            return False
        self._notify(instance.service)
        return True

    @rpc(idempotent=True)
    async def instances(self, service: str) -> list[Instance]:
        return self.state.snapshot(service)

    @rpc(idempotent=True)
    async def services(self) -> list[str]:
        return self.state.services()

    @rpc
    async def watch(self, service: str) -> AsyncIterator[list[Instance]]:
        """The instances of ``service`` now, then again after every change."""
        while True:
            changed = self._change_future(service)
            yield self.state.snapshot(service)
            await asyncio.shield(changed)

    @rpc(idempotent=True)
    async def stats(self) -> dict[str, int | bool]:
        s = self.state
        return {
            "leases": len(s.leases),
            "registrations": s.registrations,
            "renewals": s.renewals,
            "evictions": s.evictions,
            "revision": s.revision,
            "self_preservation": s.preserving,
            "self_preservation_episodes": s.preservation.episodes,
            "held": s.held,
        }
