"""The registry interface: tiny on purpose (Kratos' shape). A backend is one module implementing it.

- ``register``/``deregister`` announce an instance (the backend keeps it alive: leases, sessions);
- ``resolve`` returns the current instances of a service;
- ``watch`` returns an async iterator of full snapshots, the current one first, then one per change.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from meshkit.discovery.instance import Instance


class Watcher(Protocol):
    def __aiter__(self) -> AsyncIterator[list[Instance]]: ...

    async def close(self) -> None: ...


class Registry(Protocol):
    async def register(self, instance: Instance) -> None: ...

    async def deregister(self, instance: Instance) -> None: ...

    async def resolve(self, service: str) -> list[Instance]: ...

    def watch(self, service: str) -> Watcher: ...

    async def close(self) -> None: ...
