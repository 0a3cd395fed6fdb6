"""redis:// between real processes: racers, a SIGKILLed and a SIGSTOPped holder
(tests/coord/process_contract.py), under a key prefix of this module's own, deleted at the end."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest
import redis.asyncio as aioredis

from tests.coord.process_contract import ProcessContract
from tests.resilience.redis_engine import SHARED, require_redis

PREFIX = f"meshkit-test:proc-{uuid.uuid4().hex[:10]}:"


@pytest.fixture(scope="module", autouse=True)
def _delete_what_the_backend_made() -> Iterator[None]:
    require_redis()
    yield

    async def delete() -> None:
        client = aioredis.from_url(SHARED)
        async for key in client.scan_iter(match=f"{PREFIX}*", count=1000):
            await client.delete(key)
        await client.aclose()

    asyncio.run(delete())


class TestRedisLockProcesses(ProcessContract):
    url = f"{SHARED}?prefix={PREFIX}"
    ttl = 1.0  # Redis expires keys to the millisecond
