"""Locks on MariaDB/MySQL: the lease is a connection, the token an autocommit counter.

``mysql://user:password@host:3306/db`` (``?mode=row`` by default, ``?mode=get_lock``;
``?table=meshkit_locks`` names the lock table, the fence table is ``<table>_fences``;
``?connect_timeout=5``). Every grant has a **dedicated connection**, and that connection *is* the
lease:

- ``mode=row``: a row per name in ``<table>``, locked by ``SELECT … FOR UPDATE`` in a transaction
  the connection keeps open; ``mode=get_lock``: ``GET_LOCK(name, timeout)``, which belongs to the
  connection's session. Either way the server releases the lock when the connection ends: a holder
  that crashes (its socket closes) or is KILLed loses it at once.
- **The TTL is real**: the connection runs with ``wait_timeout = ceil(ttl)``, so the server closes
  it, and rolls back, once it has been idle that long: a SIGSTOPped or partitioned holder loses the
  lock ``ceil(ttl)`` seconds (the server's granularity is a second) after its last renewal. A renewal
  is one round trip on the held connection (``SELECT 1``), which restarts the server's idle clock.
- **Waiting** is the server's lock queue: ``innodb_lock_wait_timeout`` (``GET_LOCK``'s own timeout)
  bounds it on the server, ``NOWAIT`` (timeout 0) tries once, and an asyncio timeout of exactly
  ``wait`` bounds it on our side. A waiter that is cancelled or times out on our side cannot simply
  close its socket: the server does not read a connection whose statement is blocked, and would
  grant the row to the dead waiter when its turn comes. So the waiter's connection is KILLed from a
  side connection; the server then ends its lock request and its transaction. Only if the process
  list shows it still running our statement (a random marker in its comment): connection ids start
  again from 1 after a restart, and a KILL by id alone could end someone else's connection.

**The fencing token** is ``<table>_fences.fence`` for the name, incremented by one autocommit
statement on the side connection (``UPDATE … fence = LAST_INSERT_ID(fence + 1)``) *after* the row
lock is granted, followed by a round trip on the held connection. Incrementing inside the held
transaction would be wrong: that transaction never commits (the lock is released by ROLLBACK, or by
the server when the holder dies), so the increment would be undone and the same token handed to the
next holder. Incrementing in its own committed statement makes every token unique and increasing;
the round trip after it proves the held connection (hence the lock) was alive after the token was
drawn, so the token is only returned to a holder that held the lock throughout, and any later holder
draws a larger one. A name's lock row and fence row stay in the tables after release (the fence
row is the memory that keeps tokens increasing); waiters leave nothing.

**FIFO**: InnoDB grants a waited-for row lock to the waiters in the order they asked (observed on
MariaDB 10.11, see docs/coordination.md); ``GET_LOCK`` is a metadata lock, granted in order too.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import re
import secrets
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from meshkit.coord.backend import Grant
from meshkit.errors import BadLockRequest, EngineUnavailable, LockTimeout, StatusCode
from meshkit.schemes import BackendURL

#: innodb_lock_wait_timeout's maximum on MariaDB (~3 years): what "wait for ever" sets on the server.
_FOREVER = 100_000_000
#: GET_LOCK takes no "for ever": a waiter for ever asks again each time this runs out.
_GET_LOCK_FOREVER = 31_536_000
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,50}")
_ACCESS_DENIED = {1044, 1045, 1698}
_LOCK_WAIT_TIMEOUT = 1205
_NO_SUCH_THREAD = 1094
_START = "start it with: bash scripts/engines.sh"


def _timeout(key: str, wait: float | None) -> LockTimeout:
    return LockTimeout(f"lock {key!r} was not granted within {wait or 0:g}s (MariaDB/MySQL)")


def _driver() -> Any:
    try:
        import asyncmy
    except ImportError as exc:  # pragma: no cover - the extra is installed in CI
        raise ImportError("mysql:// locks need asyncmy: pip install 'meshkit[mysql]'") from exc
    return asyncmy


@dataclass(slots=True, eq=False)
class _Held:
    """A grant's connection; ``guard`` keeps renew and release from sharing it at once."""

    conn: Any
    thread: int
    key: str
    guard: asyncio.Lock = field(default_factory=asyncio.Lock)
    #: A comment in this connection's lock statement: what tells, in the server's process list,
    #: that a connection id is still ours and blocked (ids start again from 1 after a restart).
    marker: str = field(default_factory=lambda: f"meshkit-wait-{secrets.token_hex(8)}")


class MySQLLocks:
    """A :class:`~meshkit.coord.backend.LockBackend` on MariaDB/MySQL (see the module docstring)."""

    def __init__(
        self,
        host: str,
        port: int,
        user: str,
        password: str,
        database: str,
        *,
        mode: str = "row",
        table: str = "meshkit_locks",
        connect_timeout: float = 5.0,
    ) -> None:
        if mode not in ("row", "get_lock"):
            raise BadLockRequest(f"mysql:// mode is row or get_lock, got {mode!r}")
        if not _IDENTIFIER.fullmatch(table):
            raise BadLockRequest(f"mysql:// table must match {_IDENTIFIER.pattern}, got {table!r}")
        self.host, self.port, self.user, self.password, self.database = host, port, user, password, database
        self.mode, self.table, self.fences = mode, table, f"{table}_fences"
        self.connect_timeout = connect_timeout
        self._side: Any = None
        self._side_lock = asyncio.Lock()
        self._ready = False
        self._held: set[_Held] = set()
        self._cleanups: set[asyncio.Task[None]] = set()

    # -- errors and connections ------------------------------------------------------------

    def _unavailable(self, exc: BaseException) -> EngineUnavailable:
        where = f"MariaDB/MySQL at {self.host}:{self.port}"
        code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
        if code in _ACCESS_DENIED:
            return EngineUnavailable(
                f"{where} refused user {self.user!r} on database {self.database!r}: {exc}",
                code=StatusCode.UNAUTHENTICATED,
            )
        return EngineUnavailable(f"{where} cannot be used ({exc}); {_START}")

    async def _connect(self) -> Any:
        asyncmy = _driver()
        try:
            return await asyncio.wait_for(
                asyncmy.connect(
                    host=self.host,
                    port=self.port,
                    user=self.user,
                    password=self.password,
                    db=self.database,
                    autocommit=True,
                    connect_timeout=self.connect_timeout,
                    init_command="SET SESSION sql_notes = 0",  # no "already exists" notes as warnings
                ),
                self.connect_timeout,
            )
        except (OSError, TimeoutError, asyncmy.errors.MySQLError) as exc:
            raise self._unavailable(exc) from exc

    async def _side_run(self, sql: str, args: tuple[Any, ...] = (), *, fetch: bool = False) -> Any:
        """One statement on the shared side connection (opened, and reopened once after an engine
        restart, as needed); returns the cursor's ``lastrowid`` (``fetch``: its rows)."""
        errors = _driver().errors
        async with self._side_lock:
            for attempt in (1, 2):
                if self._side is None:
                    self._side = await self._connect()
                try:
                    async with self._side.cursor() as cur:
                        await cur.execute(sql, args)
                        return await cur.fetchall() if fetch else cur.lastrowid
                except (errors.OperationalError, errors.InterfaceError, OSError) as exc:
                    code = exc.args[0] if exc.args else None
                    if code == _NO_SUCH_THREAD:
                        return None
                    self._side.close()
                    self._side = None
                    if attempt == 2 or code not in (2006, 2013, 0, None):
                        raise self._unavailable(exc) from exc
                except errors.MySQLError as exc:
                    raise self._unavailable(exc) from exc
        return None  # pragma: no cover - the loop returns or raises

    async def _prepare(self) -> None:
        if self._ready:
            return
        await self._side_run(
            f"CREATE TABLE IF NOT EXISTS `{self.table}` (name VARCHAR(255) NOT NULL PRIMARY KEY) ENGINE=InnoDB"
        )
        await self._side_run(
            f"CREATE TABLE IF NOT EXISTS `{self.fences}` "
            "(name VARCHAR(255) NOT NULL PRIMARY KEY, fence BIGINT NOT NULL) ENGINE=InnoDB"
        )
        self._ready = True

    @staticmethod
    async def _fetch(conn: Any, sql: str, args: tuple[Any, ...] = ()) -> Any:
        async with conn.cursor() as cur:
            await cur.execute(sql, args)
            row = await cur.fetchone()
            return None if row is None else row[0]

    def _kill_later(self, held: _Held) -> asyncio.Task[None]:
        """Close a waiter's connection and, if its lock statement is still running on the server,
        KILL it there; a task of its own, so that a cancelled waiter's cleanup finishes even though
        its caller is gone. Only a connection the process list shows running *our* statement (its
        marker) is killed: after an engine restart the same id may be someone else's."""

        async def kill() -> None:
            held.conn.close()
            with contextlib.suppress(EngineUnavailable):
                # SHOW PROCESSLIST, filtered here, not information_schema.processlist: under
                # concurrent queries of that table MariaDB 10.11 was seen to crash (SIGSEGV freeing
                # its temporary Aria table), and the engine is shared.
                rows = await self._side_run("SHOW FULL PROCESSLIST", fetch=True) or []
                running = [row for row in rows if row[0] == held.thread and held.marker in (row[7] or "")]
                if running:
                    await self._side_run(f"KILL CONNECTION {int(held.thread)}")

        task = asyncio.get_running_loop().create_task(kill())
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)
        return task

    # -- the backend -------------------------------------------------------------------------

    @staticmethod
    def _lock_key(name: str) -> str:
        key = f"meshkit:{name}"  # GET_LOCK names are server-wide: keep ours apart; MySQL takes 64
        return key if len(key) <= 64 else "meshkit:" + hashlib.blake2b(name.encode(), digest_size=16).hexdigest()

    async def acquire(self, name: str, owner: str, ttl: float, wait: float | None, value: bytes = b"") -> Grant:
        await self._prepare()
        conn = await self._connect()
        held = _Held(conn, int(conn.thread_id()), self._lock_key(name) if self.mode == "get_lock" else name)
        try:
            await self._wait(held, ttl, wait)
            token = int(await self._side_run(self._FENCE.format(table=self.fences), (name,)))
            sent_at = asyncio.get_running_loop().time()  # the server's idle clock restarts after this
            await self._fetch(conn, "SELECT 1")  # alive after the token was drawn: held throughout
        except BaseException as exc:
            await asyncio.shield(self._kill_later(held))
            if isinstance(exc, _driver().errors.MySQLError | OSError):
                raise self._unavailable(exc) from exc
            raise
        self._held.add(held)
        return Grant(name=name, owner=owner, token=token, ttl=ttl, sent_at=sent_at, value=value, handle=held)

    _FENCE = (
        "INSERT INTO `{table}` (name, fence) VALUES (%s, LAST_INSERT_ID(1)) "
        "ON DUPLICATE KEY UPDATE fence = LAST_INSERT_ID(fence + 1)"
    )

    async def _wait(self, held: _Held, ttl: float, wait: float | None) -> None:
        """Return once ``held``'s connection holds the lock; LockTimeout after ``wait``."""
        conn, errors = held.conn, _driver().errors
        server_wait = _FOREVER if wait is None else math.ceil(wait) + 1  # ours fires first, exactly
        if self.mode == "row":
            nowait = " NOWAIT" if wait == 0 else ""
            statement = f"SELECT /* {held.marker} */ name FROM `{self.table}` WHERE name = %s FOR UPDATE{nowait}"
            args: tuple[Any, ...] = (held.key,)
        else:
            timeout = _GET_LOCK_FOREVER if wait is None else wait
            statement, args = f"SELECT /* {held.marker} */ GET_LOCK(%s, %s)", (held.key, timeout)
        async with conn.cursor() as cur:
            await cur.execute(
                f"SET SESSION wait_timeout = {max(1, math.ceil(ttl))}, SESSION innodb_lock_wait_timeout = {server_wait}"
            )
            try:
                async with asyncio.timeout(wait or None):
                    if self.mode == "row":
                        await self._ensure_row(cur, held.key)
                        await conn.begin()
                    while True:
                        await cur.execute(statement, args)
                        row = await cur.fetchone()
                        if self.mode == "row" or (row is not None and row[0] == 1):
                            return
                        if wait is not None or row is None or row[0] is None:  # None: GET_LOCK was killed
                            raise _timeout(held.key, wait)
            except TimeoutError:
                raise _timeout(held.key, wait) from None
            except errors.OperationalError as exc:
                if exc.args and exc.args[0] == _LOCK_WAIT_TIMEOUT:
                    raise _timeout(held.key, wait) from None
                raise

    async def _ensure_row(self, cur: Any, key: str) -> None:
        """The name's row, made if missing. A plain read first: an INSERT of an existing row checks
        the duplicate under a shared lock, so it would queue behind the row's holder."""
        await cur.execute(f"SELECT 1 FROM `{self.table}` WHERE name = %s", (key,))
        if await cur.fetchone() is None:
            try:
                await cur.execute(f"INSERT INTO `{self.table}` (name) VALUES (%s)", (key,))
            except _driver().errors.IntegrityError:
                pass  # made by another acquire at the same moment

    async def renew(self, grant: Grant) -> bool:
        held: _Held = grant.handle
        check = "SELECT 1" if self.mode == "row" else "SELECT IS_USED_LOCK(%s) = CONNECTION_ID()"
        async with held.guard:
            if held not in self._held:
                return False
            try:
                # No answer within the lease: the connection is in an unknown state, so it is dropped.
                ok = await asyncio.wait_for(
                    self._fetch(held.conn, check, () if self.mode == "row" else (held.key,)), grant.ttl
                )
            except (TimeoutError, OSError, _driver().errors.MySQLError):
                ok = None
            if ok == 1:
                return True
            self._held.discard(held)
            held.conn.close()  # an idle connection: the server sees it close and rolls back
            return False

    async def release(self, grant: Grant) -> bool:
        held: _Held = grant.handle
        async with held.guard:
            if held not in self._held:
                return False
            self._held.discard(held)
            try:
                if self.mode == "row":
                    await held.conn.rollback()
                    released = True
                else:
                    released = await self._fetch(held.conn, "SELECT RELEASE_LOCK(%s)", (held.key,)) == 1
                await held.conn.ensure_closed()
                return released
            except (OSError, _driver().errors.MySQLError):
                held.conn.close()
                return False

    async def close(self) -> None:
        for held in list(self._held):
            self._held.discard(held)
            held.conn.close()  # the server rolls back and releases when it sees the socket close
        if self._cleanups:
            await asyncio.gather(*self._cleanups, return_exceptions=True)
        async with self._side_lock:
            if self._side is not None:
                with contextlib.suppress(Exception):
                    await self._side.ensure_closed()
                self._side = None


def open_mysql(url: BackendURL) -> MySQLLocks:
    """``mysql://user:password@host:port/db?mode=row|get_lock&table=NAME`` (see the module)."""
    parts = url.parts
    database = parts.path.lstrip("/") or "test"
    return MySQLLocks(
        parts.hostname or "127.0.0.1",
        parts.port or 3306,
        unquote(parts.username or "root"),
        unquote(parts.password or ""),
        unquote(database),
        mode=url.text("mode", "row"),
        table=url.text("table", "meshkit_locks"),
        connect_timeout=url.number("connect_timeout", 5.0),
    )
