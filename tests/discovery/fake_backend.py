"""A third-party registry backend as small as one can be: what an entry point in the
``meshkit.registries`` group names (``fake = "tests.discovery.fake_backend:open_fake"``)."""

from __future__ import annotations

from meshkit.discovery import Instance, RegistryURL, Watcher
from meshkit.discovery.memory import MemoryRegistry


class FakeRegistry:
    """Delegates to a named memory registry, and remembers the URL it was opened with."""

    forgets_on_restart = False

    def __init__(self, url: RegistryURL) -> None:
        self.url = url
        self.ttl = url.number("ttl", 7.0)
        self._inner = MemoryRegistry("fake:" + url.netloc)

    async def register(self, instance: Instance) -> None:
        await self._inner.register(instance)

    async def deregister(self, instance: Instance) -> None:
        await self._inner.deregister(instance)

    async def resolve(self, service: str) -> list[Instance]:
        return await self._inner.resolve(service)

    def watch(self, service: str) -> Watcher:
        return self._inner.watch(service)

    async def close(self) -> None:
        await self._inner.close()


def open_fake(url: RegistryURL) -> FakeRegistry:
    return FakeRegistry(url)


NOT_A_FACTORY = 42
