"""The SQL lock backends' own figures: FIFO order of queued waiters, acquire+release, hand-off.

    PYTHONPATH=src python bench/sql_locks_probe.py [--rounds 200] [--trials 5] [--waiters 6]

For mysql:// (row and get_lock) and postgresql:// on the suite's engines (127.0.0.1:3306, :5432):

- **FIFO**: a holder, then ``--waiters`` waiters queued 150 ms apart (each on its own backend);
  after the release, were they granted in the order they queued? (``--trials`` runs);
- **acquire+release** of a fresh name, p50 over ``--rounds`` (one connection per grant);
- **hand-off**: a release's start to the queued waiter's grant, p50.

The tables and the sequence it makes are dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from typing import Any

from meshkit.coord.backend import LockBackend
from meshkit.coord.mysql import open_mysql
from meshkit.coord.postgres import open_postgres
from meshkit.schemes import BackendURL

TAG = f"probe_{uuid.uuid4().hex[:8]}"
URLS = {
    "mysql row": f"mysql://root@127.0.0.1:3306/test?table={TAG}",
    "mysql get_lock": f"mysql://root@127.0.0.1:3306/test?mode=get_lock&table={TAG}",
    "postgresql": f"postgresql://127.0.0.1:5432/test?sequence={TAG}",
}


def backend(url: str) -> LockBackend:
    parsed = BackendURL.parse(url)
    return open_mysql(parsed) if parsed.scheme == "mysql" else open_postgres(parsed)


async def fifo(url: str, waiters: int) -> bool:
    name = f"fifo-{uuid.uuid4().hex}"
    holder = backend(url)
    grant = await holder.acquire(name, "holder", 30.0, 0)
    order: list[int] = []
    queued = [backend(url) for _ in range(waiters)]

    async def wait(i: int, b: LockBackend) -> None:
        got = await b.acquire(name, str(i), 30.0, 30.0)
        order.append(i)
        await b.release(got)

    tasks = []
    for i, b in enumerate(queued):
        tasks.append(asyncio.create_task(wait(i, b)))
        await asyncio.sleep(0.15)  # queue them one after another
    await holder.release(grant)
    await asyncio.gather(*tasks)
    for b in (holder, *queued):
        await b.close()
    return order == sorted(order)


async def timings(url: str, rounds: int) -> tuple[float, float]:
    a, b = backend(url), backend(url)
    cycle = []
    for _ in range(rounds):
        started = time.perf_counter()
        grant = await a.acquire(f"lat-{uuid.uuid4().hex}", "x", 30.0, 0)
        await a.release(grant)
        cycle.append(time.perf_counter() - started)
    name, handoff = f"hand-{uuid.uuid4().hex}", []
    for _ in range(max(10, rounds // 5)):
        grant = await a.acquire(name, "a", 30.0, 5.0)
        waiter = asyncio.create_task(b.acquire(name, "b", 30.0, 5.0))
        await asyncio.sleep(0.05)  # queued
        started = time.perf_counter()
        await a.release(grant)
        second = await waiter
        handoff.append(time.perf_counter() - started)
        await b.release(second)
    await a.close()
    await b.close()
    return statistics.median(cycle), statistics.median(handoff)


async def drop() -> None:
    import asyncmy
    import asyncpg

    conn: Any = await asyncmy.connect(host="127.0.0.1", port=3306, user="root", db="test", autocommit=True)
    async with conn.cursor() as cur:
        await cur.execute(f"DROP TABLE IF EXISTS {TAG}, {TAG}_fences")
    conn.close()
    pg = await asyncpg.connect(host="127.0.0.1", port=5432, database="test")
    await pg.execute(f"DROP SEQUENCE IF EXISTS {TAG}")
    await pg.close()


async def run(rounds: int, trials: int, waiters: int) -> None:
    try:
        for label, url in URLS.items():
            in_order = sum([await fifo(url, waiters) for _ in range(trials)])
            cycle, handoff = await timings(url, rounds)
            print(
                f"{label:15} FIFO {in_order}/{trials} runs of {waiters} waiters; "
                f"acquire+release p50 {cycle * 1000:.1f} ms; release -> waiter granted p50 {handoff * 1000:.1f} ms"
            )
    finally:
        await drop()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python bench/sql_locks_probe.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--waiters", type=int, default=6)
    args = parser.parse_args()
    asyncio.run(run(args.rounds, args.trials, args.waiters))


if __name__ == "__main__":
    main()
