"""The registry interfaces: tiny on purpose, split by who needs what (Kratos' shape).

- a ``Registrar`` is what a server needs: ``register``/``deregister`` announce an instance, and the
  backend keeps it announced (leases, sessions) until it is deregistered or the process dies;
- a ``Discovery`` is what a client needs: ``resolve`` returns the current instances of a service,
  ``watch`` an async iterator of full snapshots (the current one first, then one per change);
- a ``Registry`` is a backend that is both, and ``close()`` ends what it holds (heartbeats,
  connections). ``open_registry(url)`` returns one; whoever opened it closes it.

A backend is one module implementing ``Registry``; its URL scheme is declared in
``meshkit.discovery.backends``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from meshkit.discovery.instance import Instance


class Watcher(Protocol):
    def __aiter__(self) -> AsyncIterator[list[Instance]]: ...

    async def close(self) -> None: ...


class Registrar(Protocol):
    async def register(self, instance: Instance) -> None: ...

    async def deregister(self, instance: Instance) -> None: ...


class Discovery(Protocol):
    # Read-only properties rather than plain attributes: a backend may implement them as class
    # constants or as attributes of a narrower type (etcd's TTL is whole seconds, an int), which a
    # settable protocol member would refuse.
    @property
    def forgets_on_restart(self) -> bool:
        """True if the registry keeps its state in memory and comes back from a restart knowing
        nobody (meshkit's built-in one). A client then holds the instances it knew for ``ttl``
        after a watch reconnects (``discovery.amnesia``); for a registry that keeps its state
        (etcd, ZooKeeper: CP) the answer after a reconnect is the truth, and nothing is held."""
        ...

    @property
    def ttl(self) -> float | None:
        """Seconds a silent instance stays registered (a lease TTL, a session timeout); None if
        registrations do not expire on their own (``memory://``)."""
        ...

    async def resolve(self, service: str) -> list[Instance]: ...

    def watch(self, service: str) -> Watcher: ...


class Registry(Registrar, Discovery, Protocol):
    async def close(self) -> None: ...
