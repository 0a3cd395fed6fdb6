"""``Locks(url)``: what every lock backend shares — checks, the watchdog, and losing a lease safely.

A backend (:mod:`meshkit.coord.backend`) only grants, renews and releases. Here, the same for all:

- a request is checked first (:mod:`meshkit.coord.names`), so every engine refuses the same names;
- a :class:`Held` lock runs a *watchdog* task that renews at ttl/3 (:mod:`meshkit.coord.lease`)
  while the body runs, however long that is;
- when the lease cannot be kept (the engine says it is gone, or renewals fail until the holder's
  view of the lease runs out) ``held.lost`` is set and the task that entered ``async with`` is
  cancelled; the ``async with`` then raises :class:`~meshkit.errors.LockLost`, so the body never
  goes on believing it is protected. Work it did not stop in time is what a fencing token catches
  (:mod:`meshkit.coord.fencing`);
- releasing a lock that was lost raises :class:`~meshkit.errors.LockLost`: never silently ok.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from types import TracebackType
from typing import Any

from meshkit.coord.backend import Grant, LockBackend
from meshkit.coord.lease import RETRY_FRACTION, LeaseSchedule
from meshkit.coord.names import check_name, check_ttl, check_wait
from meshkit.errors import EngineUnavailable, LockLost
from meshkit.schemes import SchemeTable

log = logging.getLogger("meshkit.coord")

#: The entry point group a distribution declares its lock backends in (name = URL scheme).
LOCKS_GROUP = "meshkit.locks"
_BACKEND_MEMBERS = ("acquire", "close", "release", "renew")

lock_backends: SchemeTable[LockBackend] = SchemeTable(
    "lock",
    LOCKS_GROUP,
    {
        "memory": "meshkit.coord.memory:open_memory",
        "meshkit": "meshkit.coord.builtin:open_builtin",
        "redis": "meshkit.coord.redis:open_redis",
        "rediss": "meshkit.coord.redis:open_redis",
        "mysql": "meshkit.coord.mysql:open_mysql",
        "postgresql": "meshkit.coord.postgres:open_postgres",
        "postgres": "meshkit.coord.postgres:open_postgres",
        "etcd": "meshkit.coord.etcd:open_etcd_locks",
        "zk": "meshkit.coord.zookeeper:open_zookeeper_locks",
    },
    _BACKEND_MEMBERS,
)

DEFAULT_TTL = 10.0
#: What the watchdog cancels a body with; ``async with`` turns exactly this into LockLost.
LOST_MESSAGE = "meshkit.coord: the lock's lease was lost"


def new_owner() -> str:
    """A holder id no other holder will ever have (128 random bits)."""
    return secrets.token_hex(16)


class Held:
    """A granted lock: its ``token``, the ``lost`` event, and :meth:`release`.

    Made by :meth:`Locks.acquire` (release it yourself) or by ``async with locks.lock(...)``.
    """

    def __init__(self, backend: LockBackend, grant: Grant, loop: asyncio.AbstractEventLoop, granted_at: float) -> None:
        self._backend = backend
        self._grant = grant
        self._loop = loop
        self.lost = asyncio.Event()
        self._schedule = LeaseSchedule(grant.ttl, granted_at)
        self._body: asyncio.Task[Any] | None = None
        self._cancels = 0  # how often the watchdog cancelled the body (undone on exit)
        self._released = False
        # The watchdog task starts when the first renewal is due: a lock released before ttl/3
        # (most are) costs a timer, not a task.
        self._watchdog: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = loop.call_at(self._schedule.next_attempt, self._start_watchdog)

    def _start_watchdog(self) -> None:
        self._timer = None
        self._watchdog = self._loop.create_task(self._watch(), name=f"meshkit lock watchdog {self.name}")

    @property
    def name(self) -> str:
        return self._grant.name

    @property
    def token(self) -> int:
        """The fencing token: greater than every token granted before for this name."""
        return self._grant.token

    @property
    def ttl(self) -> float:
        return self._grant.ttl

    @property
    def value(self) -> bytes:
        return self._grant.value

    @property
    def owner(self) -> str:
        return self._grant.owner

    @property
    def valid_until(self) -> float:
        """Until when (event loop time) this holder may act on the lease, as far as it knows."""
        return self._schedule.valid_until

    def __repr__(self) -> str:
        state = "lost" if self.lost.is_set() else "released" if self._released else "held"
        return f"<Held {self.name!r} token={self.token} {state}>"

    async def _watch(self) -> None:
        schedule = self._schedule
        loop = self._loop
        while True:
            await asyncio.sleep(max(0.0, schedule.next_attempt - loop.time()))
            sent = loop.time()
            if schedule.expired(sent):
                await self._lose("renewals failed until the lease ran out")
                return
            try:
                async with asyncio.timeout(schedule.time_left(sent)):
                    still_ours = await self._backend.renew(self._grant)
            except (TimeoutError, EngineUnavailable, OSError) as exc:
                schedule.failed(loop.time())
                log.warning(
                    "renewing lock %r failed (%s); retrying until the lease runs out",
                    self.name,
                    exc or type(exc).__name__,
                )
                continue
            if not still_ours:
                await self._lose("the engine says the lease is gone")
                return
            schedule.renewed(sent)

    async def _lose(self, why: str) -> None:
        """Set ``lost`` and cancel the body, again every ttl/10 until it leaves ``async with``: a
        cancellation can be swallowed on its way (3.11's ``wait_for`` drops one that races its
        result, and so may a body's own ``except``), and a body must not go on unprotected."""
        log.error("lock %r (token %d) lost: %s", self.name, self.token, why)
        self.lost.set()
        while (body := self._body) is not None and not body.done():
            body.cancel(LOST_MESSAGE)
            self._cancels += 1
            await asyncio.sleep(self.ttl * RETRY_FRACTION)

    async def release(self) -> None:
        """Give the lock back. Raises LockLost if it was lost before (the work under it may have
        overlapped another holder's), every time it is asked; releasing twice is otherwise a no-op."""
        if self._released:
            if self.lost.is_set():
                raise LockLost(f"lock {self.name!r} (token {self.token}) was lost before it was released")
            return
        self._released = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._watchdog is not None:
            self._watchdog.cancel()
            try:
                await self._watchdog
            except asyncio.CancelledError:
                pass
        try:
            still_ours = await self._backend.release(self._grant)
        except (EngineUnavailable, OSError):
            if not self.lost.is_set():
                raise  # not known to be given back: it ends with its lease, within the TTL
            still_ours = False  # lost already: that is what the caller must hear
        if self.lost.is_set() or not still_ours:
            self.lost.set()
            raise LockLost(f"lock {self.name!r} (token {self.token}) was lost before it was released")

    async def __aenter__(self) -> Held:
        self._body = asyncio.current_task()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        body, self._body = self._body, None  # the watchdog stops cancelling it
        if body is not None:
            # Undo our own cancellations (only ours: the task may be cancelled by others too).
            for _ in range(min(self._cancels, body.cancelling())):
                body.uncancel()
        ours = kind is asyncio.CancelledError and _cancelled_by_us(exc)
        try:
            await self.release()
        except LockLost as lost:
            if kind is asyncio.CancelledError and not ours:
                return  # cancelled by someone else: that cancellation goes on
            # The body's own exception, if any, stays attached as the cause.
            raise lost from (None if ours else exc)


def _cancelled_by_us(exc: BaseException | None) -> bool:
    return isinstance(exc, asyncio.CancelledError) and LOST_MESSAGE in exc.args


class _LockRequest:
    """``async with locks.lock(...) as held``: acquire on entry, release on exit."""

    def __init__(self, locks: Locks, name: str, ttl: float, wait: float | None) -> None:
        self._locks = locks
        self._args = (name, ttl, wait)
        self._held: Held | None = None

    async def __aenter__(self) -> Held:
        self._held = await self._locks.acquire(*self._args)
        return await self._held.__aenter__()

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        held, self._held = self._held, None
        if held is not None:
            await held.__aexit__(kind, exc, tb)


class Locks:
    """Distributed locks on the engine ``url`` names (``memory://``, ``redis://``, ``mysql://``,
    ``postgresql://``, ``etcd://``, ``zk://``; see docs/coordination.md for what each guarantees)."""

    def __init__(self, url: str, *, backend: LockBackend | None = None) -> None:
        self.url = url
        #: The engine's backend (``backend=``: one made already, say a wrapper in a test).
        self.backend: LockBackend = backend if backend is not None else lock_backends.open(url)

    def lock(self, name: str, ttl: float = DEFAULT_TTL, wait: float | None = None) -> _LockRequest:
        """``async with locks.lock("stock:apple", ttl=10, wait=5) as held``; LockTimeout after
        ``wait`` seconds (None: wait for ever; 0: try once). Arguments are checked here, at once."""
        return _LockRequest(self, check_name(name), check_ttl(ttl), check_wait(wait))

    async def acquire(self, name: str, ttl: float = DEFAULT_TTL, wait: float | None = None, value: bytes = b"") -> Held:
        """Take the lock and keep it (the watchdog renews it) until :meth:`Held.release`."""
        name, ttl, wait = check_name(name), check_ttl(ttl), check_wait(wait)
        loop = asyncio.get_running_loop()
        sent = loop.time()
        grant = await self.backend.acquire(name, new_owner(), ttl, wait, value)
        # The lease runs from when the engine granted it: no earlier than the grant request the
        # backend says it sent last, and no earlier than this call (a backend that says nothing).
        return Held(self.backend, grant, loop, max(sent, grant.sent_at))

    async def close(self) -> None:
        await self.backend.close()

    async def __aenter__(self) -> Locks:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
