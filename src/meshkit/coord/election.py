"""``Election(url, name)``: leader election as a lock whose holder says who it is.

A campaign is a lock acquire that waits (for ever, by default) and carries the candidate's value;
being elected is holding the lock, so everything :mod:`meshkit.coord.locks` guarantees holds for a
term: the watchdog keeps it, ``term.lost`` is set and the body cancelled when it cannot, and
``term.token`` (the grant's fencing token) grows with every term. :meth:`Election.leader` and
:meth:`Election.observe` ask the backend who holds the name (:class:`~meshkit.coord.backend.
ElectionBackend`). Engines: ``memory://``, ``redis://``, ``etcd://``, ``zk://``.

Election names live apart from lock names (``election:NAME`` on the engine), so a lock and an
election may share a name without meeting.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import TracebackType

from meshkit.coord.backend import ElectionBackend, Holder
from meshkit.coord.locks import DEFAULT_TTL, Held, Locks
from meshkit.coord.names import MAX_NAME_LENGTH, check_name, check_ttl, check_wait
from meshkit.errors import BadLockRequest
from meshkit.schemes import SchemeTable

#: The entry point group a distribution declares its election backends in (name = URL scheme).
ELECTIONS_GROUP = "meshkit.elections"
PREFIX = "election:"

election_backends: SchemeTable[ElectionBackend] = SchemeTable(
    "election",
    ELECTIONS_GROUP,
    {
        "memory": "meshkit.coord.memory:open_memory",
        "meshkit": "meshkit.coord.builtin:open_builtin",
        "redis": "meshkit.coord.redis:open_redis",
        "rediss": "meshkit.coord.redis:open_redis",
        "etcd": "meshkit.coord.etcd:open_etcd_elections",
        "zk": "meshkit.coord.zookeeper:open_zookeeper_elections",
    },
    ("acquire", "close", "holder", "release", "renew", "watch"),
)

#: A term of office is a held lock whose value is the leader's.
Term = Held


class _Campaign:
    def __init__(self, election: Election, value: bytes, wait: float | None) -> None:
        self._election = election
        self._value = value
        self._wait = wait
        self._term: Held | None = None

    async def __aenter__(self) -> Held:
        self._term = await self._election.elect(self._value, self._wait)
        return await self._term.__aenter__()

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        term, self._term = self._term, None
        if term is not None:
            await term.__aexit__(kind, exc, tb)


class Election:
    """Leader election named ``name`` on the engine ``url`` names; ``ttl`` is each term's lease."""

    def __init__(self, url: str, name: str, ttl: float = DEFAULT_TTL) -> None:
        self.url = url
        self.name = check_name(name)
        if len(PREFIX) + len(name) > MAX_NAME_LENGTH:
            raise BadLockRequest(f"election name of {len(name)} characters is over the limit of {MAX_NAME_LENGTH - 9}")
        self.ttl = check_ttl(ttl)
        self.backend: ElectionBackend = election_backends.open(url)
        self._key = PREFIX + name
        self._locks = Locks(url, backend=self.backend)  # the same front, over this backend
        self._term: Held | None = None

    def campaign(self, value: str | bytes, wait: float | None = None) -> _Campaign:
        """``async with election.campaign("node-a") as term``: returns once elected (LockTimeout
        after ``wait`` seconds if given); the term ends when the block does."""
        return _Campaign(self, value.encode() if isinstance(value, str) else value, check_wait(wait))

    async def elect(self, value: bytes, wait: float | None = None) -> Held:
        """Campaign and hold the term until :meth:`resign` (or ``term.release()``)."""
        term = await self._locks.acquire(self._key, self.ttl, wait, value)
        self._term = term
        return term

    async def resign(self) -> None:
        """End this object's current term, if it has one (the next candidate is elected)."""
        term, self._term = self._term, None
        if term is not None:
            await term.release()

    async def leader(self) -> str | None:
        """The leader's value now, or None if there is none."""
        holder = await self.backend.holder(self._key)
        return None if holder is None else holder.value.decode(errors="replace")

    async def leader_term(self) -> Holder | None:
        """The leader with its term's token, or None."""
        return await self.backend.holder(self._key)

    async def observe(self) -> AsyncIterator[str | None]:
        """The leader now, then each new one (None while there is none), for as long as you iterate."""
        async for holder in self.backend.watch(self._key):
            yield None if holder is None else holder.value.decode(errors="replace")

    async def close(self) -> None:
        await self.backend.close()

    async def __aenter__(self) -> Election:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
