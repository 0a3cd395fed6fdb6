"""Admin connections to the shared MariaDB and PostgreSQL, what each still has of a lock, and a
private MariaDB and PostgreSQL to restart."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest

from meshkit.coord.postgres import lock_key
from meshkit.testing import ChildProcess, spawn

START = "start it with: bash scripts/engines.sh"


async def mariadb() -> Any:
    import asyncmy

    try:
        return await asyncmy.connect(host="127.0.0.1", port=3306, user="root", db="test", autocommit=True)
    except (OSError, asyncmy.errors.OperationalError) as exc:
        pytest.fail(f"MariaDB is not running on 127.0.0.1:3306 ({exc}); {START}")


async def postgres() -> Any:
    import asyncpg

    try:
        return await asyncpg.connect(host="127.0.0.1", port=5432, database="test")
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.fail(f"PostgreSQL is not running on 127.0.0.1:5432 ({exc}); {START}")


async def my_rows(conn: Any, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    async with conn.cursor() as cur:
        await cur.execute(sql, args)
        return list(await cur.fetchall() or [])


async def mariadb_leftovers(conn: Any, name: str, besides: int | None = None) -> list[str]:
    """Connections still running a statement about ``name``, InnoDB transactions running one, a
    GET_LOCK of it: what a waiter or an ended holder must not leave (``besides``: a holder's
    connection id, whose lock is expected)."""
    # SHOW FULL PROCESSLIST filtered here: querying information_schema.processlist concurrently
    # was seen to crash MariaDB 10.11 (see meshkit.coord.mysql).
    [(me,)] = await my_rows(conn, "SELECT CONNECTION_ID()")
    left = [
        f"connection {row[0]} ({row[4]}: {row[7]})"
        for row in await my_rows(conn, "SHOW FULL PROCESSLIST")
        if row[0] != me and name in (row[7] or "") and "SHOW FULL PROCESSLIST" not in (row[7] or "")
    ]
    left += [
        f"transaction of connection {thread} ({state})"
        for thread, state in await my_rows(
            conn,
            "SELECT trx_mysql_thread_id, trx_state FROM information_schema.innodb_trx WHERE trx_query LIKE %s",
            (f"%{name}%",),
        )
    ]
    [(used,)] = await my_rows(conn, "SELECT IS_USED_LOCK(%s)", (f"meshkit:{name}",))
    if used is not None and used != besides:
        left.append(f"GET_LOCK held by connection {used}")
    return left


async def postgres_leftovers(conn: Any, name: str, besides: int | None = None) -> list[str]:
    """Advisory locks (held or waited for) on ``name``'s key and the sessions that had them
    (``besides``: a holder's backend pid, whose lock is expected)."""
    key = lock_key(name) & 0xFFFF_FFFF_FFFF_FFFF
    rows = await conn.fetch(
        "SELECT l.pid, l.granted, a.state FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.classid = $1::bigint::oid AND l.objid = $2::bigint::oid "
        "AND l.objsubid = 1",
        key >> 32,
        key & 0xFFFF_FFFF,
    )
    return [
        f"session {r['pid']} ({r['state']}) {'holds' if r['granted'] else 'waits for'} it"
        for r in rows
        if r["pid"] != besides
    ]


class PrivateMariaDB:
    """A MariaDB of its own (port, data dir) for tests that restart the engine; ``stop``/``start``
    keep the data, as a restart does. Never the shared one on 3306."""

    def __init__(self, port: int) -> None:
        if shutil.which("mariadbd") is None or shutil.which("mariadb-install-db") is None:
            pytest.fail(f"MariaDB is not installed; {START}")
        self.port = port
        self._dir = Path(tempfile.mkdtemp(prefix="meshkit-mariadb-"))
        subprocess.run(
            [
                "mariadb-install-db",
                "--no-defaults",
                f"--datadir={self._dir / 'data'}",
                "--user=root",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        self._proc: ChildProcess | None = None
        self._created = False

    @property
    def url(self) -> str:
        return f"mysql://root@127.0.0.1:{self.port}/test"

    def start(self) -> None:
        self._proc = spawn(
            [
                "mariadbd",
                "--no-defaults",
                f"--datadir={self._dir / 'data'}",
                f"--port={self.port}",
                "--bind-address=127.0.0.1",
                f"--socket={self._dir / 'sock'}",
                f"--pid-file={self._dir / 'pid'}",
                "--user=root",
                "--innodb-buffer-pool-size=16M",
                "--skip-log-bin",
            ],
            name="private mariadb",
            port=self.port,
            stderr="discard",
            grace=30,
            timeout=30,
        )

    async def create_database(self) -> None:
        import asyncmy

        conn = await asyncmy.connect(host="127.0.0.1", port=self.port, user="root", autocommit=True)
        await my_rows(conn, "CREATE DATABASE IF NOT EXISTS test")
        conn.close()

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.stop()
        self._proc = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)


class PrivatePostgres:
    """A PostgreSQL of its own (port, data dir, run as the ``postgres`` user: it refuses root) for
    tests that restart the engine; started and stopped with ``pg_ctl`` on its own data dir, so
    only this instance is ever touched. ``stop``/``start`` keep the data, as a restart does."""

    def __init__(self, port: int) -> None:
        bins = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
        if not bins or shutil.which("runuser") is None:
            pytest.fail(f"PostgreSQL's server binaries are not installed; {START}")
        self._bin = bins[-1].parent
        self.port = port
        self._dir = Path(tempfile.mkdtemp(prefix="meshkit-postgres-"))
        shutil.chown(self._dir, "postgres", "postgres")
        self._as_postgres([str(self._bin / "initdb"), "-D", str(self._data), "-U", "postgres", "--auth=trust"])
        self._running = False

    @property
    def _data(self) -> Path:
        return self._dir / "data"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _as_postgres(self, argv: list[str]) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *argv], check=True, capture_output=True, timeout=60)

    def start(self) -> None:
        options = f"-p {self.port} -k {self._dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = str(self._dir / "server.log")  # not our pipes: the server would hold them open
        self._as_postgres([str(self._bin / "pg_ctl"), "-D", str(self._data), "-o", options, "-l", log, "-w", "start"])
        self._running = True

    def stop(self) -> None:
        """A fast shutdown: every session is ended, as a crash or a restart ends them."""
        if self._running:
            self._as_postgres([str(self._bin / "pg_ctl"), "-D", str(self._data), "-m", "fast", "-w", "stop"])
        self._running = False

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)


class Kind:
    """Connections of one kind a helper takes ("asyncpg", "asyncmy", "sqlalchemy-postgresql",
    "sqlalchemy-mariadb") on the shared engines, and an admin connection to the same engine
    (``admin(sql, *args)`` with ``?`` placeholders). ``autocommit``: SQLAlchemy connections in
    AUTOCOMMIT (asyncmy ones always are; asyncpg's are unless a transaction is begun)."""

    KINDS = ("asyncpg", "asyncmy", "sqlalchemy-postgresql", "sqlalchemy-mariadb")

    def __init__(self, kind: str, *, autocommit: bool = True, pool_size: int = 5) -> None:
        self.kind = kind
        self.on_mysql = kind in ("asyncmy", "sqlalchemy-mariadb")
        self._autocommit = autocommit
        self._pool_size = pool_size
        self._admin: Any = None
        self._engine: Any = None

    async def open(self) -> None:
        self._admin = await (mariadb() if self.on_mysql else postgres())
        if self.kind.startswith("sqlalchemy"):
            from sqlalchemy.ext.asyncio import create_async_engine

            url = (
                "mysql+asyncmy://root@127.0.0.1:3306/test"
                if self.on_mysql
                else "postgresql+asyncpg://127.0.0.1:5432/test"
            )
            options: dict[str, Any] = {"pool_size": self._pool_size}
            if self._autocommit:
                options["isolation_level"] = "AUTOCOMMIT"
            self._engine = create_async_engine(url, **options)

    async def admin(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        if self.on_mysql:
            return await my_rows(self._admin, sql.replace("?", "%s"), args)
        for i in range(len(args)):
            sql = sql.replace("?", f"${i + 1}", 1)
        return [tuple(r) for r in await self._admin.fetch(sql, *args)]

    async def connect(self) -> Any:
        if self._engine is not None:
            return await self._engine.connect()
        if self.kind == "asyncmy":
            import asyncmy

            return await asyncmy.connect(host="127.0.0.1", port=3306, user="root", db="test", autocommit=True)
        import asyncpg

        return await asyncpg.connect(host="127.0.0.1", port=5432, database="test")

    async def close(self, conn: Any) -> None:
        if self.kind == "asyncmy":
            conn.close()
        else:
            await conn.close()

    async def aclose(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()
        if self.on_mysql:
            self._admin.close()
        else:
            await self._admin.close()
