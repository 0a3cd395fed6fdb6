"""mysql:// and postgresql:// across an engine restart (a private MariaDB or PostgreSQL): holders
lose their locks, the backend is unavailable while the engine is down and works again after, with
tokens still growing."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from meshkit.coord.mysql import open_mysql
from meshkit.coord.postgres import open_postgres
from meshkit.errors import EngineUnavailable, LockTimeout
from meshkit.schemes import BackendURL
from tests.coord.sql_engines import PrivateMariaDB, PrivatePostgres
from tests.resilience.redis_engine import closed_port

pytestmark = pytest.mark.slow

#: (engine, the backend's URL options): the mysql backend's two modes, and PostgreSQL.
KINDS = {
    "mysql-row": ("mariadb", "?mode=row"),
    "mysql-get_lock": ("mariadb", "?mode=get_lock"),
    "postgresql": ("postgres", ""),
}


@pytest.fixture(params=sorted(KINDS))
def engine(request: pytest.FixtureRequest) -> Iterator[tuple[Any, Any]]:
    kind, options = KINDS[request.param]
    private: Any = PrivateMariaDB(closed_port()) if kind == "mariadb" else PrivatePostgres(closed_port())
    private.start()
    try:
        yield private, options
    finally:
        private.remove()


async def test_a_restart_ends_every_lock_and_tokens_keep_growing_after_it(engine: tuple[Any, Any]) -> None:
    private, options = engine
    if isinstance(private, PrivateMariaDB):
        await private.create_database()
        backend: Any = open_mysql(BackendURL.parse(f"{private.url}{options}"))
    else:
        backend = open_postgres(BackendURL.parse(private.url))
    name = f"restart-{uuid.uuid4().hex}"
    try:
        held = await backend.acquire(name, "a", 30.0, 0)
        with pytest.raises(LockTimeout):
            await backend.acquire(name, "b", 30.0, 0)
        private.stop()
        assert not await backend.renew(held), "a lock must not outlive the server it was held on"
        with pytest.raises(EngineUnavailable) as down:
            await backend.acquire(name, "b", 30.0, 0)
        assert f"127.0.0.1:{private.port}" in down.value.message
        private.start()
        after = await backend.acquire(name, "b", 30.0, 0)  # free: the restart released it
        assert after.token > held.token, "the fence counter (the token sequence) survived the restart"
        assert await backend.release(after)
    finally:
        await backend.close()
