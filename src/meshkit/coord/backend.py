"""What a lock backend is: four coroutines over one engine, and the grant they hand out.

Every engine (memory, Redis, MariaDB, PostgreSQL, etcd, ZooKeeper) is one module implementing
:class:`LockBackend`; :class:`meshkit.coord.Locks` adds what is the same everywhere on top (name and
TTL checks, the watchdog that renews at ttl/3, cancelling the body when the lease is lost). An
election needs two more things of a backend, who holds a name now and every change of that, so
:class:`ElectionBackend` adds :meth:`~ElectionBackend.holder` and :meth:`~ElectionBackend.watch`.

The contract each backend keeps (tests/coord/contract.py checks it against every real engine):

- **Mutual exclusion under the lease.** While a grant's lease runs (``ttl`` seconds from its last
  successful ``acquire``/``renew``, as the engine measures it) no other ``acquire`` of the name
  succeeds.
- **Fencing tokens.** ``Grant.token`` is an int that is strictly greater than every token handed
  out before for the same name, on this engine, whoever held it (grants of other names may share
  the sequence). A resource that remembers the highest token it has seen can refuse a holder whose
  lease ended without it noticing (a GC pause, a SIGSTOP): see :mod:`meshkit.coord.fencing`.
- **Waiting.** ``wait=None`` waits for ever, ``wait=0`` tries once, otherwise up to ``wait``
  seconds, then :class:`~meshkit.errors.LockTimeout`. Waiting is by the engine's notification
  (a watch, a pub/sub message, a blocked lock request), never by polling on a fixed sleep.
- **Cancelling a waiter leaves nothing behind** on the engine: no key, node, row or queue entry.
- **Errors are translated** at this boundary: an engine that cannot be reached raises
  :class:`~meshkit.errors.EngineUnavailable` (with how to start it), never the driver's own type.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(slots=True)
class Grant:
    """One holder's grant of one name: what ``acquire`` returns and ``renew``/``release`` take."""

    name: str
    #: Random id of this holder (unique per acquire): what the engine compares before it renews or
    #: releases, so a holder whose lease ended can never release its successor's.
    owner: str
    #: The fencing token (see the module docstring).
    token: int
    ttl: float
    #: Event-loop time (``loop.time()``) at which the request that got the grant was *sent*: the
    #: engine's lease runs from no earlier, so the holder counts its TTL from here (a grant that
    #: waited 30 s must not count from when it started waiting). A backend whose lease is an idle
    #: timer (the SQL ones) gives the send time of its last round trip before returning.
    sent_at: float = 0.0
    #: What the holder said about itself (an election candidate's value; a lock's is b"").
    value: bytes = b""
    #: The backend's own state for this grant: a connection, a lease id, a node path.
    handle: Any = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class Holder:
    """Who holds a name now, as the engine says: an election's leader."""

    owner: str
    value: bytes
    token: int


class LockBackend(Protocol):
    """One engine's locks. ``acquire`` grants, ``renew`` extends, ``release`` gives back."""

    async def acquire(self, name: str, owner: str, ttl: float, wait: float | None, value: bytes = b"") -> Grant:
        """Grant ``name`` to ``owner`` for ``ttl`` seconds, waiting as the module docstring says."""
        ...

    async def renew(self, grant: Grant) -> bool:
        """Extend the lease to ``grant.ttl`` from now (the front counts from when it called).
        False: it is not ours any more (expired and perhaps taken, the session or connection
        gone). Raises EngineUnavailable when the engine cannot be asked; the watchdog then tries
        again until the lease would have run out."""
        ...

    async def release(self, grant: Grant) -> bool:
        """Give the name back and wake the next waiter. False: it was not ours any more."""
        ...

    async def close(self) -> None:
        """End every connection and session this backend holds (grants held end with them)."""
        ...


class ElectionBackend(LockBackend, Protocol):
    """A lock backend that can also say who holds a name and follow every change."""

    async def holder(self, name: str) -> Holder | None: ...

    def watch(self, name: str) -> AsyncIterator[Holder | None]:
        """The holder now, then again each time it changes (None while nobody holds it)."""
        ...
