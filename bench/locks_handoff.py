"""One Redis hand-off at a time, timed: where a hand-off's time goes, without contention noise.

    python bench/locks_handoff.py [--runs 150] [--url redis://127.0.0.1:6379/15]

Each run: take a fresh name, queue one waiter behind it (polled until Redis shows it queued),
release, and time the release call and the waiter's grant from the release's start; then one
redis-py PING for the engine's round trip. Prints the p50 of each.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import uuid

import redis.asyncio as aioredis

from meshkit.coord import Locks


async def _queued(raw: aioredis.Redis, queue: str, timeout: float = 5.0) -> None:
    """Until Redis shows a waiter in ``queue`` (polled every ms, for at most ``timeout`` s)."""
    for _ in range(int(timeout * 1000)):
        if await raw.llen(queue):
            return
        await asyncio.sleep(0.001)
    raise TimeoutError(f"no waiter appeared in {queue} within {timeout:g} s")


async def main(url: str, runs: int) -> None:
    locks = Locks(url)
    raw = aioredis.Redis.from_url(url)
    loop = asyncio.get_running_loop()
    handoffs, releases, pings = [], [], []
    try:
        for _ in range(runs):
            name = f"handoff-{uuid.uuid4().hex[:8]}"
            held = await locks.acquire(name, ttl=10)
            waiter = asyncio.create_task(locks.acquire(name, ttl=10))
            queue = locks.backend.queue_keys(name)[0]  # type: ignore[attr-defined]
            await _queued(raw, queue)
            start = loop.time()
            await held.release()
            released = loop.time()
            handed = await waiter
            granted = loop.time()
            handoffs.append(granted - start)
            releases.append(released - start)
            await handed.release()
            before = loop.time()
            await raw.ping()
            pings.append(loop.time() - before)
    finally:
        await locks.close()
        await raw.aclose()

    def ms(values: list[float]) -> str:
        return f"{statistics.median(values) * 1e3:.3f} ms"

    ratio = statistics.median(handoffs) / statistics.median(pings)
    print(f"hand-off p50 {ms(handoffs)}, release call p50 {ms(releases)}, ping p50 {ms(pings)}: {ratio:.1f} pings")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=150)
    parser.add_argument("--url", default="redis://127.0.0.1:6379/15")
    args = parser.parse_args()
    asyncio.run(main(args.url, args.runs))
