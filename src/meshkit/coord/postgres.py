"""Locks on PostgreSQL: a session advisory lock on a dedicated connection; tokens from a sequence.

``postgresql://user:password@host:5432/db`` (``postgres://`` too; ``?sequence=meshkit_lock_fence``
names the token sequence, ``?connect_timeout=5``). Every grant has its own connection, and the
lease is that connection's session:

- **The lock** is ``pg_advisory_lock(key)`` with ``key`` the first 8 bytes of the name's BLAKE2b
  hash, as a signed 64-bit int. Two names whose keys collide (about one pair in 2**32 among 2**32
  names) only exclude each other: safe, merely less concurrent. Session advisory locks take no
  row, no table and no transaction, and end with the session: a holder that crashes or is
  terminated (``pg_terminate_backend``) loses it at once.
- **The TTL is real**: the session runs with ``idle_session_timeout = ttl`` (PostgreSQL 14+, to
  the millisecond), so the server ends a session idle that long: a SIGSTOPped or partitioned holder
  loses the lock ``ttl`` after its last renewal. A renewal is ``SELECT 1`` on the held connection,
  which restarts that clock.
- **Waiting** is the server's lock queue: ``lock_timeout = wait`` bounds ``pg_advisory_lock`` (and an
  asyncio timeout a little longer backs it up), ``pg_try_advisory_lock`` tries once for ``wait=0``.
  Lock waits on one key are granted in the order they were queued (FIFO). A waiter that is cancelled
  is ended on the server from a side connection (``pg_terminate_backend``): asyncpg does send a
  cancel request when its task is cancelled, but a cancel racing the grant could leave a session
  holding a lock nobody knows of; ending the session removes both the wait and any such lock. The
  session is named by its pid *and* ``backend_start``, since a pid is reused by later backends.

**The fencing token** is ``nextval(sequence)``, taken on the held connection after the grant.
``nextval`` is never rolled back, so every token is unique and increasing across the whole engine
(every name shares the sequence); being run by the session that holds the lock, it is drawn while
the lock is held, so any later holder of the name draws a larger one. Waiters leave nothing behind:
no row exists, and a waiter's session is ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from meshkit.coord.backend import Grant
from meshkit.errors import BadLockRequest, EngineUnavailable, LockTimeout, StatusCode
from meshkit.schemes import BackendURL

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_START = "start it with: bash scripts/engines.sh"
#: How much longer than ``wait`` our own timeout gives the server's ``lock_timeout`` to answer.
_SERVER_GRACE = 2.0


def _driver() -> Any:
    try:
        import asyncpg
    except ImportError as exc:  # pragma: no cover - the extra is installed in CI
        raise ImportError("postgresql:// locks need asyncpg: pip install 'meshkit[postgres]'") from exc
    return asyncpg


def lock_key(name: str) -> int:
    """The advisory lock key of ``name``: a signed 64-bit int (what ``pg_advisory_lock`` takes)."""
    digest = hashlib.blake2b(name.encode(), digest_size=8, person=b"meshkit.lock").digest()
    return int.from_bytes(digest, "big", signed=True)


@dataclass(slots=True, eq=False)
class _Held:
    conn: Any
    pid: int
    key: int
    #: When the session began: with the pid, what names it on the server (a pid is reused by a
    #: later backend once this one has exited; the pair is not).
    started: Any = None
    guard: asyncio.Lock = field(default_factory=asyncio.Lock)


class PostgresLocks:
    """A :class:`~meshkit.coord.backend.LockBackend` on PostgreSQL (see the module docstring)."""

    def __init__(
        self,
        host: str,
        port: int,
        user: str | None,
        password: str | None,
        database: str,
        *,
        sequence: str = "meshkit_lock_fence",
        connect_timeout: float = 5.0,
    ) -> None:
        if not _IDENTIFIER.fullmatch(sequence):
            raise BadLockRequest(f"postgresql:// sequence must match {_IDENTIFIER.pattern}, got {sequence!r}")
        self.host, self.port, self.user, self.password, self.database = host, port, user, password, database
        self.sequence = sequence
        self.connect_timeout = connect_timeout
        self._side: Any = None
        self._side_lock = asyncio.Lock()
        self._ready = False
        self._held: set[_Held] = set()
        self._cleanups: set[asyncio.Task[None]] = set()

    def _unavailable(self, exc: BaseException) -> EngineUnavailable:
        where = f"PostgreSQL at {self.host}:{self.port}"
        sqlstate = getattr(exc, "sqlstate", None) or ""
        if sqlstate.startswith("28"):  # invalid authorization / password
            return EngineUnavailable(
                f"{where} refused user {self.user!r} on database {self.database!r}: {exc}",
                code=StatusCode.UNAUTHENTICATED,
            )
        return EngineUnavailable(f"{where} cannot be used ({type(exc).__name__}: {exc}); {_START}")

    def _failures(self) -> tuple[type[BaseException], ...]:
        asyncpg = _driver()
        return (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError)

    async def _connect(self) -> Any:
        asyncpg = _driver()
        try:
            return await asyncpg.connect(
                host=self.host,
                port=self.port,
                user=self.user,
                password=self.password,
                database=self.database,
                timeout=self.connect_timeout,
            )
        except self._failures() as exc:
            raise self._unavailable(exc) from exc

    async def _side_run(self, sql: str, *args: Any) -> Any:
        """One statement on the shared side connection, reopened once if the engine restarted."""
        async with self._side_lock:
            for attempt in (1, 2):
                if self._side is None or self._side.is_closed():
                    self._side = await self._connect()
                try:
                    return await self._side.fetchval(sql, *args)
                except self._failures() as exc:
                    if isinstance(exc, _driver().PostgresError) and not _connection_gone(exc):
                        raise self._unavailable(exc) from exc
                    self._side.terminate()
                    self._side = None
                    if attempt == 2:
                        raise self._unavailable(exc) from exc
        return None  # pragma: no cover - the loop returns or raises

    async def _prepare(self) -> None:
        if self._ready:
            return
        asyncpg = _driver()
        try:
            await self._side_run(f'CREATE SEQUENCE IF NOT EXISTS "{self.sequence}"')
        except EngineUnavailable as exc:
            # Two backends creating it at once: one of them sees the other's catalog row.
            if not isinstance(exc.__cause__, asyncpg.UniqueViolationError | asyncpg.DuplicateTableError):
                raise
        self._ready = True

    def _end_later(self, held: _Held) -> asyncio.Task[None]:
        """End ``held``'s session on the server (its wait, its lock) as a task of its own, so that a
        cancelled waiter's cleanup finishes even though its caller is gone."""

        async def end() -> None:
            held.conn.terminate()
            if held.started is None:
                return  # it never got as far as waiting
            with contextlib.suppress(EngineUnavailable):
                await self._side_run(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid = $1 AND backend_start = $2",
                    held.pid,
                    held.started,
                )

        task = asyncio.get_running_loop().create_task(end())
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)
        return task

    async def acquire(self, name: str, owner: str, ttl: float, wait: float | None, value: bytes = b"") -> Grant:
        asyncpg = _driver()
        await self._prepare()
        conn = await self._connect()
        held = _Held(conn, conn.get_server_pid(), lock_key(name))
        try:
            held.started = await conn.fetchval(
                "SELECT backend_start FROM pg_stat_activity, set_config('idle_session_timeout', $1, false) "
                "WHERE pid = pg_backend_pid()",
                str(max(1, math.ceil(ttl * 1000))),
            )
            if wait == 0:
                if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", held.key):
                    raise _timeout(name, wait)
            else:
                await conn.execute(f"SET lock_timeout = {0 if wait is None else max(1, math.ceil(wait * 1000))}")
                locking = conn.execute("SELECT pg_advisory_lock($1)", held.key)
                try:
                    await (locking if wait is None else asyncio.wait_for(locking, wait + _SERVER_GRACE))
                except (TimeoutError, asyncpg.LockNotAvailableError):
                    raise _timeout(name, wait) from None
            sent_at = asyncio.get_running_loop().time()  # the server's idle clock restarts after this
            token = int(await conn.fetchval("SELECT nextval($1::regclass)", self.sequence))
        except BaseException as exc:
            await asyncio.shield(self._end_later(held))
            if isinstance(exc, self._failures()):
                raise self._unavailable(exc) from exc
            raise
        self._held.add(held)
        return Grant(name=name, owner=owner, token=token, ttl=ttl, sent_at=sent_at, value=value, handle=held)

    async def renew(self, grant: Grant) -> bool:
        held: _Held = grant.handle
        async with held.guard:
            if held not in self._held:
                return False
            try:
                # No answer within the lease: the connection is in an unknown state, so it is dropped.
                ok = await asyncio.wait_for(held.conn.fetchval("SELECT 1"), grant.ttl)
            except self._failures():
                ok = None
            if ok == 1:
                return True
            self._held.discard(held)
            held.conn.terminate()  # an idle session: the server sees the socket close and ends it
            return False

    async def release(self, grant: Grant) -> bool:
        held: _Held = grant.handle
        async with held.guard:
            if held not in self._held:
                return False
            self._held.discard(held)
            try:
                released = bool(await held.conn.fetchval("SELECT pg_advisory_unlock($1)", held.key))
                held.conn.terminate()  # unlocked already: no need to wait for a graceful goodbye
                return released
            except self._failures():
                held.conn.terminate()
                return False

    async def close(self) -> None:
        for held in list(self._held):
            self._held.discard(held)
            held.conn.terminate()  # the session ends with its socket, and its locks with it
        if self._cleanups:
            await asyncio.gather(*self._cleanups, return_exceptions=True)
        async with self._side_lock:
            if self._side is not None:
                with contextlib.suppress(*self._failures()):
                    await self._side.close(timeout=self.connect_timeout)
                self._side = None


def _connection_gone(exc: BaseException) -> bool:
    """Whether a server error means the session ended (admin shutdown, idle timeout, crash)."""
    sqlstate = getattr(exc, "sqlstate", None) or ""
    return sqlstate.startswith(("57P", "08"))


def _timeout(name: str, wait: float | None) -> LockTimeout:
    return LockTimeout(f"lock {name!r} was not granted within {wait or 0:g}s (PostgreSQL)")


def open_postgres(url: BackendURL) -> PostgresLocks:
    """``postgresql://user:password@host:port/db?sequence=NAME`` (see the module docstring)."""
    parts = url.parts
    return PostgresLocks(
        parts.hostname or "127.0.0.1",
        parts.port or 5432,
        unquote(parts.username) if parts.username else None,
        unquote(parts.password) if parts.password else None,
        unquote(parts.path.lstrip("/")) or "test",
        sequence=url.text("sequence", "meshkit_lock_fence"),
        connect_timeout=url.number("connect_timeout", 5.0),
    )
