"""``memory://[NAME]``: an in-process registry for tests and single-process systems.

Registries with the same name in one process are the same registry, so a Server and a Client built
from the same URL find each other. Changes reach watchers at once, in order.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from meshkit.discovery.instance import Instance

if TYPE_CHECKING:
    from meshkit.discovery.backends import RegistryURL
    from meshkit.discovery.registry import Registry


class _Shared:
    def __init__(self) -> None:
        self.services: dict[str, dict[str, Instance]] = {}
        self.watchers: dict[str, set[MemoryWatcher]] = {}

    def snapshot(self, service: str) -> list[Instance]:
        return sorted(self.services.get(service, {}).values(), key=lambda i: i.id)

    def publish(self, service: str) -> None:
        snap = self.snapshot(service)
        for watcher in list(self.watchers.get(service, ())):
            watcher.push(snap)


_registries: dict[str, _Shared] = {}


class MemoryWatcher:
    def __init__(self, shared: _Shared, service: str) -> None:
        self._shared = shared
        self._service = service
        self._queue: asyncio.Queue[list[Instance] | None] = asyncio.Queue()
        self._closed = False
        shared.watchers.setdefault(service, set()).add(self)
        self._queue.put_nowait(shared.snapshot(service))

    def push(self, snapshot: list[Instance]) -> None:
        if not self._closed:
            self._queue.put_nowait(snapshot)

    def __aiter__(self) -> AsyncIterator[list[Instance]]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[list[Instance]]:
        while True:
            snap = await self._queue.get()
            if snap is None:
                return
            yield snap

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._shared.watchers.get(self._service, set()).discard(self)
            self._queue.put_nowait(None)


class MemoryRegistry:
    #: The registry is this process's memory: it cannot restart without the process.
    forgets_on_restart: bool = False
    #: Registrations have no lease: they last until deregistered (or the process ends).
    ttl: float | None = None

    def __init__(self, name: str = "") -> None:
        self.name = name
        self._shared = _registries.setdefault(name, _Shared())

    async def register(self, instance: Instance) -> None:
        self._shared.services.setdefault(instance.service, {})[instance.id] = instance
        self._shared.publish(instance.service)

    async def deregister(self, instance: Instance) -> None:
        if self._shared.services.get(instance.service, {}).pop(instance.id, None) is not None:
            self._shared.publish(instance.service)

    async def resolve(self, service: str) -> list[Instance]:
        return self._shared.snapshot(service)

    def watch(self, service: str) -> MemoryWatcher:
        return MemoryWatcher(self._shared, service)

    async def close(self) -> None:
        return None


def open_memory(url: RegistryURL) -> Registry:
    """``memory://NAME``: the whole rest of the URL is the name (``memory://a/b`` is ``a/b``)."""
    return MemoryRegistry(url.netloc + url.path)


def reset(name: str | None = None) -> None:
    """Forget one named registry (or all): for tests."""
    if name is None:
        _registries.clear()
    else:
        _registries.pop(name, None)
