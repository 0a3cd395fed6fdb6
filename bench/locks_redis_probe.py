"""Uncontended acquire + release on Redis: meshkit's backend (and its Locks front) vs redis-py's Lock.

One process, one name, sequential: every iteration is the grant script (token included) and the
release script, i.e. two round trips, as for redis-py's ``Lock`` (SET NX PX, then its release
script). The front adds the watchdog task per hold. Run (Redis on 127.0.0.1:6379)::

    PYTHONPATH=src python bench/locks_redis_probe.py [--n 5000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
from redis.asyncio.lock import Lock

from meshkit.coord.locks import Locks, lock_backends
from meshkit.coord.redis import RedisLocks, open_redis
from meshkit.schemes import BackendURL

URL = "redis://127.0.0.1:6379/0"
PREFIX = "meshkit-bench:"


async def rate(n: int, step: Callable[[int], Awaitable[None]]) -> tuple[float, float]:
    """(acquire+release per second, client CPU µs per acquire+release: less noisy on a busy host)."""
    for i in range(200):  # warm: connections made, scripts loaded
        await step(i)
    started, cpu = time.perf_counter(), time.process_time()
    for i in range(n):
        await step(i)
    return n / (time.perf_counter() - started), (time.process_time() - cpu) / n * 1e6


async def handoff(backend: RedisLocks, name: str, rounds: int) -> None:
    """Release to the waiting acquirer's grant: the notification path (pub/sub), not the TTL."""
    took = []
    for _ in range(rounds):
        held = await backend.acquire(name, uuid.uuid4().hex, 10.0, 0)
        waiter = asyncio.create_task(backend.acquire(name, uuid.uuid4().hex, 10.0, 10.0))
        await asyncio.sleep(0.01)  # let it subscribe, fail its try and sleep
        assert backend.listener.subscribers(backend.keys(name)[2]) == 1 and not waiter.done()
        started = time.perf_counter()
        await backend.release(held)
        grant = await waiter
        took.append(time.perf_counter() - started)
        await backend.release(grant)
    took.sort()
    median, p99 = took[len(took) // 2], took[int(len(took) * 0.99)]
    print(f"release -> waiter granted ({rounds}x, ttl 10 s): median {median * 1e3:.2f} ms, p99 {p99 * 1e3:.2f} ms")


async def main(n: int, rounds: int) -> None:
    lock_backends.register("redis", open_redis)
    backend = open_redis(BackendURL.parse(f"{URL}?prefix={PREFIX}"))
    locks = Locks(f"{URL}?prefix={PREFIX}")
    client = aioredis.from_url(URL)
    name = f"probe-{uuid.uuid4().hex[:8]}"

    async def meshkit_backend(i: int) -> None:
        grant = await backend.acquire(name, uuid.uuid4().hex, 10.0, 0)
        await backend.release(grant)

    async def meshkit_front(i: int) -> None:
        held = await locks.acquire(name, ttl=10.0, wait=0)
        await held.release()

    redis_lock = Lock(client, f"{PREFIX}redis-py:{name}", timeout=10.0, blocking=False)

    async def redis_py(i: int) -> None:
        assert await redis_lock.acquire()
        await redis_lock.release()

    # The same Lock on the backend's client: its BlockingConnectionPool (bounded; a burst waits for a
    # connection) costs client CPU that redis-py's default pool (which fails past 100) does not.
    pooled_lock = Lock(backend._redis, f"{PREFIX}redis-py-pooled:{name}", timeout=10.0, blocking=False)

    async def redis_py_pooled(i: int) -> None:
        assert await pooled_lock.acquire()
        await pooled_lock.release()

    cases = {
        "meshkit RedisLocks (backend)": meshkit_backend,
        "meshkit Locks front": meshkit_front,
        "redis-py Lock": redis_py,
        "redis-py Lock, blocking pool": redis_py_pooled,
    }
    results: dict[str, list[tuple[float, float]]] = {case: [] for case in cases}
    for _ in range(rounds):  # interleaved, so a noisy neighbour hits every case alike
        for case, step in cases.items():
            results[case].append(await rate(n, step))
    for case, measured in results.items():
        rates = [r for r, _ in measured]
        every = ", ".join(f"{r:.0f}" for r in rates)
        cpu = min(c for _, c in measured)
        print(f"{case:30s} {max(rates):6.0f}/s  {cpu:5.0f} µs client CPU each (best of {rounds}; all: {every})")
    await handoff(backend, name, rounds=300)
    await backend.close()
    await locks.close()
    async for key in client.scan_iter(match=f"{PREFIX}*"):
        await client.delete(key)
    await client.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.n, args.rounds))
