"""mysql:// and postgresql:// between real processes: racers, a SIGKILLed and a SIGSTOPped holder
(tests/coord/process_contract.py). The lock table and the token sequence are this module's own,
dropped at the end."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest

from tests.coord.process_contract import ProcessContract
from tests.coord.sql_engines import mariadb, my_rows, postgres

TAG = f"proc_{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module", autouse=True)
def _drop_what_the_backends_made() -> Iterator[None]:
    yield

    async def drop() -> None:
        conn = await mariadb()
        await my_rows(conn, f"DROP TABLE IF EXISTS {TAG}, {TAG}_fences")
        conn.close()
        pg = await postgres()
        await pg.execute(f"DROP SEQUENCE IF EXISTS {TAG}")
        await pg.close()

    asyncio.run(drop())


class TestMariaDBRowLockProcesses(ProcessContract):
    url = f"mysql://root@127.0.0.1:3306/test?table={TAG}"
    ttl = 2.0  # wait_timeout counts whole seconds


class TestMariaDBGetLockProcesses(ProcessContract):
    url = f"mysql://root@127.0.0.1:3306/test?mode=get_lock&table={TAG}"
    ttl = 2.0


class TestPostgresLockProcesses(ProcessContract):
    url = f"postgresql://127.0.0.1:5432/test?sequence={TAG}"
    ttl = 1.0
