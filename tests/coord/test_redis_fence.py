"""RedisFence: a write carrying a token lower than the hash's fence changes nothing."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from meshkit.coord.fencing_redis import RedisFence
from tests.coord.redis_helpers import Engine, name, open_engine, owner


@pytest.fixture
async def engine() -> AsyncIterator[Engine]:
    async for opened in open_engine():
        yield opened


async def test_a_stale_holders_write_is_refused_and_changes_nothing(engine: Engine) -> None:
    """The old holder's lease ran out and a new holder wrote: the old one's late write is refused."""
    lock, key = name(), f"{engine.prefix}stock:{uuid.uuid4().hex}"
    fence = RedisFence(engine.raw)
    old = await engine.backend.acquire(lock, owner(), ttl=10.0, wait=0)
    assert await fence.write(key, old.token, {"count": 41})
    await engine.raw.pexpire(engine.backend.keys(lock)[0], 1)  # the old holder's lease runs out
    new = await engine.backend.acquire(lock, owner(), ttl=10.0, wait=5.0)
    assert await fence.write(key, new.token, {"count": 40})
    assert not await fence.write(key, old.token, {"count": 39, "note": "late"})
    assert await engine.raw.hgetall(key) == {b"count": b"40", b"fence": str(new.token).encode()}
    assert await engine.backend.release(new)


async def test_the_same_holder_writes_many_times_with_its_token(engine: Engine) -> None:
    key = f"{engine.prefix}stock:{uuid.uuid4().hex}"
    fence = RedisFence(engine.raw, field="_token")
    for count in range(5):
        assert await fence.write(key, 1_796_000_000_000_123, {"count": count})
    assert await engine.raw.hgetall(key) == {b"count": b"4", b"_token": b"1796000000000123"}


async def test_the_fence_field_is_not_data(engine: Engine) -> None:
    key = f"{engine.prefix}stock:{uuid.uuid4().hex}"
    with pytest.raises(ValueError, match="fencing token"):
        await RedisFence(engine.raw).write(key, 1, {"fence": 0})
    assert not await engine.raw.exists(key)
