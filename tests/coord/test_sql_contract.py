"""mysql:// (both modes) and postgresql:// keep the shared lock contract (tests/coord/contract.py)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest

from meshkit.coord.locks import Held, Locks
from meshkit.coord.mysql import MySQLLocks, open_mysql
from meshkit.coord.postgres import PostgresLocks, open_postgres
from meshkit.schemes import BackendURL
from tests.coord.contract import CutOffContract
from tests.coord.sql_engines import mariadb, mariadb_leftovers, my_rows, postgres, postgres_leftovers

TAG = uuid.uuid4().hex[:10]


@pytest.fixture(scope="module", autouse=True)
def _drop_what_the_backends_made() -> Iterator[None]:
    yield

    async def drop() -> None:
        conn = await mariadb()
        await my_rows(conn, f"DROP TABLE IF EXISTS contract_{TAG}, contract_{TAG}_fences")
        conn.close()
        pg = await postgres()
        await pg.execute(f"DROP SEQUENCE IF EXISTS contract_{TAG}")
        await pg.close()

    asyncio.run(drop())


class _MariaDB(CutOffContract):
    def open(self) -> Locks:
        return Locks(self.url, backend=open_mysql(BackendURL.parse(self.url)))

    async def break_lease(self, locks: Locks, held: Held) -> None:
        backend = locks.backend
        assert isinstance(backend, MySQLLocks)
        conn = await mariadb()
        await my_rows(conn, f"KILL CONNECTION {int(held._grant.handle.thread)}")
        conn.close()

    async def leftovers(self, locks: Locks, name: str) -> list[str]:
        conn = await mariadb()
        try:
            return await mariadb_leftovers(conn, name)
        finally:
            conn.close()


class TestMariaDBRowLocks(_MariaDB):
    url = f"mysql://root@127.0.0.1:3306/test?table=contract_{TAG}"


class TestMariaDBGetLocks(_MariaDB):
    url = f"mysql://root@127.0.0.1:3306/test?mode=get_lock&table=contract_{TAG}"


class TestPostgresLocks(CutOffContract):
    url = f"postgresql://127.0.0.1:5432/test?sequence=contract_{TAG}"

    def open(self) -> Locks:
        return Locks(self.url, backend=open_postgres(BackendURL.parse(self.url)))

    async def break_lease(self, locks: Locks, held: Held) -> None:
        assert isinstance(locks.backend, PostgresLocks)
        conn = await postgres()
        await conn.execute("SELECT pg_terminate_backend($1)", held._grant.handle.pid)
        await conn.close()

    async def leftovers(self, locks: Locks, name: str) -> list[str]:
        conn = await postgres()
        try:
            return await postgres_leftovers(conn, name)
        finally:
            await conn.close()
