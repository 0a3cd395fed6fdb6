"""postgresql:// across an engine restart (a private PostgreSQL): holders lose their locks, the
backend is unavailable while the engine is down and works again after, with tokens still growing."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from meshkit.coord.postgres import open_postgres
from meshkit.errors import EngineUnavailable, LockTimeout
from meshkit.schemes import BackendURL
from tests.coord.sql_engines import PrivatePostgres
from tests.resilience.redis_engine import closed_port


@pytest.fixture
def engine() -> Iterator[PrivatePostgres]:
    engine = PrivatePostgres(closed_port())
    engine.start()
    try:
        yield engine
    finally:
        engine.remove()


@pytest.mark.slow
async def test_a_restart_ends_every_lock_and_tokens_keep_growing_after_it(engine: PrivatePostgres) -> None:
    backend = open_postgres(BackendURL.parse(engine.url))
    name = f"restart-{uuid.uuid4().hex}"
    try:
        held = await backend.acquire(name, "a", 30.0, 0)
        with pytest.raises(LockTimeout):
            await backend.acquire(name, "b", 30.0, 0)
        engine.stop()
        assert not await backend.renew(held), "a lock must not outlive the server it was held on"
        with pytest.raises(EngineUnavailable) as down:
            await backend.acquire(name, "b", 30.0, 0)
        assert f"127.0.0.1:{engine.port}" in down.value.message
        engine.start()
        after = await backend.acquire(name, "b", 30.0, 0)  # free: the restart released it
        assert after.token > held.token, "the token sequence survived the restart"
        assert await backend.release(after)
    finally:
        await backend.close()
