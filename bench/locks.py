"""Lock benchmark: meshkit's backends against redis-py's and kazoo's own locks, same run, ratios.

    python bench/locks.py [--duration 3] [--rounds 3] [--waiters 8] [--systems a,b,...]

For every system, interleaved round by round (the VM's speed drifts; ratios within a round hold):

- **uncontended**: one task acquires and releases a fresh name in a loop: acquire+release per second;
- **contended**: ``--waiters`` tasks loop on one name: grants per second, *hand-offs* per second
  (grants to another waiter than the one that just released: a lock that lets its releaser take
  it straight back hands nothing over, and starves the others), and the hand-off latency (a
  release's start to another waiter's grant) as a p50, also in engine round trips (the p50 of the
  engine's own ping, measured in the same round).

Engines: the ones the suite runs on 127.0.0.1 (Redis 6379, MariaDB 3306, PostgreSQL 5432, etcd
2379, ZooKeeper 2181); ``meshkit-builtin`` starts a ``meshkit registry`` of its own. A system whose
engine is down is reported as such and left out of the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import itertools
import json
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from meshkit.coord import Locks
from meshkit.testing import spawn


@dataclass
class System:
    name: str
    acquire: Callable[[str], Awaitable[Any]]
    release: Callable[[Any], Awaitable[None]]
    ping: Callable[[], Awaitable[None]]
    close: Callable[[], Awaitable[None]]


@dataclass
class Round:
    uncontended: float = 0.0
    grants: float = 0.0
    handoffs: float = 0.0
    handoff_p50: float = 0.0
    rtt_p50: float = 0.0


@dataclass
class Results:
    rounds: dict[str, list[Round]] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)


def _meshkit(
    name: str, url: str, ping: Callable[[], Awaitable[None]] | None, close: Callable[[], Awaitable[None]]
) -> System:
    locks = Locks(url)
    if ping is None:  # an engine without a client of its own here: one read of a lock's holder

        async def ping() -> None:
            await locks.backend.holder("bench-ping")  # type: ignore[attr-defined]

    async def acquire(lock: str) -> Any:
        return await locks.acquire(lock, ttl=10.0)

    async def release(held: Any) -> None:
        await held.release()

    async def closing() -> None:
        await locks.close()
        await close()

    return System(name, acquire, release, ping, closing)


async def _nothing() -> None:
    return None


def _redis_client() -> Any:
    import redis.asyncio as aioredis

    return aioredis.Redis(host="127.0.0.1", port=6379, db=15)


async def make(name: str, registry: list[Any]) -> System:
    """The system ``name``, connected (raises if its engine is down)."""
    if name == "meshkit-memory":
        return _meshkit(name, "memory://bench", None, _nothing)
    if name == "meshkit-builtin":
        if not registry:
            registry.append(
                spawn(
                    [sys.executable, "-m", "meshkit", "registry", "--port", "0"],
                    ready=r"registry serving on (\S+)",
                    name="bench registry",
                )
            )
        address = registry[0].ready_match[1]
        return _meshkit(name, f"meshkit://{address}", None, _nothing)
    if name in ("meshkit-redis", "redis-py"):
        client = _redis_client()
        await client.ping()

        async def ping() -> None:
            await client.ping()

        async def close() -> None:
            await client.aclose()

        if name == "meshkit-redis":
            return _meshkit(name, "redis://127.0.0.1:6379/15", ping, close)

        async def acquire(lock: str) -> Any:
            held = client.lock(f"bench:redis-py:{lock}", timeout=10.0)  # its default: poll every 0.1 s
            await held.acquire()
            return held

        async def release(held: Any) -> None:
            await held.release()

        return System(name, acquire, release, ping, close)
    if name in ("meshkit-zk", "kazoo"):
        from kazoo.client import KazooClient

        zk = KazooClient(hosts="127.0.0.1:2181")
        await asyncio.to_thread(zk.start, 5)

        async def zk_ping() -> None:
            await asyncio.to_thread(zk.exists, "/")

        async def zk_close() -> None:
            await asyncio.to_thread(zk.stop)

        if name == "meshkit-zk":
            return _meshkit(name, "zk://127.0.0.1:2181", zk_ping, zk_close)

        async def zk_acquire(lock: str) -> Any:
            held = zk.Lock(f"/bench/kazoo/{lock}")
            await asyncio.to_thread(held.acquire)
            return held

        async def zk_release(held: Any) -> None:
            await asyncio.to_thread(held.release)

        return System(name, zk_acquire, zk_release, zk_ping, zk_close)
    if name == "meshkit-etcd":
        import httpx

        http = httpx.AsyncClient()

        async def etcd_ping() -> None:
            (await http.post("http://127.0.0.1:2379/v3/maintenance/status", json={})).raise_for_status()

        await etcd_ping()
        return _meshkit(name, "etcd://127.0.0.1:2379", etcd_ping, http.aclose)
    if name == "meshkit-mysql":
        import asyncmy

        conn = await asyncmy.connect(host="127.0.0.1", user="root", password="", db="test")

        async def sql_ping() -> None:
            async with conn.cursor() as cur:
                await cur.execute("SELECT 1")

        async def sql_close() -> None:
            conn.close()

        return _meshkit(name, "mysql://root@127.0.0.1:3306/test", sql_ping, sql_close)
    if name == "meshkit-postgresql":
        import asyncpg

        pg = await asyncpg.connect("postgresql://127.0.0.1/test")

        async def pg_ping() -> None:
            await pg.fetchval("SELECT 1")

        return _meshkit(name, "postgresql://127.0.0.1/test", pg_ping, pg.close)
    raise SystemExit(f"unknown system {name!r}; known: {', '.join(SYSTEMS)}")


SYSTEMS = (
    "redis-py",
    "meshkit-redis",
    "kazoo",
    "meshkit-zk",
    "meshkit-etcd",
    "meshkit-mysql",
    "meshkit-postgresql",
    "meshkit-builtin",
    "meshkit-memory",
)


async def uncontended(system: System, duration: float) -> float:
    loop = asyncio.get_running_loop()
    end = loop.time() + duration
    done = 0
    name = f"u-{uuid.uuid4().hex[:8]}"
    while loop.time() < end:
        held = await system.acquire(name)
        await system.release(held)
        done += 1
    return done / duration


async def contended(system: System, duration: float, waiters: int) -> tuple[float, float, float]:
    """Grants per second, hand-offs per second (grants to another waiter than the last holder:
    a lock that lets its releaser take it straight back hands nothing over) and the p50 hand-off
    latency (a release's start to another waiter's grant), seconds."""
    loop = asyncio.get_running_loop()
    name = f"c-{uuid.uuid4().hex[:8]}"
    end = loop.time() + duration
    events: list[tuple[float, float, int]] = []  # (granted, release started, worker) per hold

    async def worker(number: int) -> None:
        while loop.time() < end:
            held = await system.acquire(name)
            granted = loop.time()
            events.append((granted, loop.time(), number))
            await system.release(held)
            # Let the others run: an in-memory lock never waits on I/O, so without this a worker
            # that finds it free would loop alone and the rest never get to ask.
            await asyncio.sleep(0)

    started_at = loop.time()
    await asyncio.gather(*(worker(n) for n in range(waiters)))
    elapsed = loop.time() - started_at
    events.sort()
    handoffs = [(a, b) for a, b in itertools.pairwise(events) if b[2] != a[2]]
    gaps = [b[0] - a[1] for a, b in handoffs if b[0] >= a[1]]
    return len(events) / elapsed, len(handoffs) / elapsed, (statistics.median(gaps) if gaps else float("nan"))


async def rtt(system: System, samples: int = 50) -> float:
    loop = asyncio.get_running_loop()
    times = []
    for _ in range(samples):
        t = loop.time()
        await system.ping()
        times.append(loop.time() - t)
    return statistics.median(times)


async def run(names: list[str], duration: float, rounds: int, waiters: int) -> Results:
    results = Results()
    # kazoo's lock blocks a thread per waiter: more threads than the default executor's few.
    asyncio.get_running_loop().set_default_executor(concurrent.futures.ThreadPoolExecutor(max_workers=waiters + 8))
    registry: list[Any] = []
    systems: dict[str, System] = {}
    for name in names:
        try:
            systems[name] = await make(name, registry)
        except Exception as exc:  # an engine that is down is reported, not fatal
            results.unavailable[name] = f"{type(exc).__name__}: {exc}"
    try:
        for number in range(rounds):
            for name, system in systems.items():
                r = Round()
                try:
                    r.uncontended = await uncontended(system, duration)
                    r.grants, r.handoffs, r.handoff_p50 = await contended(system, duration, waiters)
                    r.rtt_p50 = await rtt(system)
                except Exception as exc:  # a system failing mid-run is reported
                    results.unavailable[name] = f"round {number + 1}: {type(exc).__name__}: {exc}"
                    continue
                results.rounds.setdefault(name, []).append(r)
                print(
                    f"round {number + 1} {name}: {r.uncontended:,.0f} acquire+release/s, "
                    f"{r.grants:,.0f} contended grants/s, {r.handoffs:,.0f} hand-offs/s, "
                    f"hand-off p50 {r.handoff_p50 * 1000:.2f} ms, "
                    f"rtt p50 {r.rtt_p50 * 1000:.3f} ms",
                    flush=True,
                )
    finally:
        for system in systems.values():
            await system.close()
        for child in registry:
            child.stop()
    return results


def report(results: Results, baseline: str = "redis-py") -> str:
    def med(name: str, attr: str) -> float:
        return statistics.median(getattr(r, attr) for r in results.rounds[name])

    def ratio(name: str, attr: str) -> str:
        if baseline not in results.rounds:
            return "-"
        # Per round, then the median: both systems ran in the same round.
        pairs = zip(results.rounds[name], results.rounds[baseline], strict=False)
        return f"{statistics.median(getattr(a, attr) / getattr(b, attr) for a, b in pairs):.2f}x"

    lines = [
        "| system | acquire+release/s | vs redis-py | contended grants/s | hand-offs/s | vs redis-py "
        "| hand-off p50 | engine rtt p50 | hand-off / rtt |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name in results.rounds:
        p50, rtt_p50 = med(name, "handoff_p50"), med(name, "rtt_p50")
        lines.append(
            f"| {name} | {med(name, 'uncontended'):,.0f} | {ratio(name, 'uncontended')} | "
            f"{med(name, 'grants'):,.0f} | {med(name, 'handoffs'):,.0f} | {ratio(name, 'handoffs')} | "
            f"{p50 * 1000:.2f} ms | "
            f"{rtt_p50 * 1000:.3f} ms | {p50 / rtt_p50 if rtt_p50 else float('nan'):.1f} |"
        )
    for name, why in results.unavailable.items():
        lines.append(f"| {name} | unavailable: {why} | | | | | | | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/locks.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per measurement (default 3)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--waiters", type=int, default=8, help="contending tasks (default 8)")
    parser.add_argument("--systems", default=",".join(SYSTEMS), help=f"comma-separated, of: {', '.join(SYSTEMS)}")
    parser.add_argument("--json", help="also write the rounds to this file")
    args = parser.parse_args(argv)
    names = [n for n in args.systems.split(",") if n]
    started = time.time()
    results = asyncio.run(run(names, args.duration, args.rounds, args.waiters))
    print()
    print(report(results))
    if args.json:
        data = {name: [r.__dict__ for r in rounds] for name, rounds in results.rounds.items()}
        with open(args.json, "w") as out:
            json.dump({"started": started, "args": vars(args), "rounds": data, "unavailable": results.unavailable}, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
