"""Latency of the etcd:// and zk:// lock backends on the suite's engines (127.0.0.1:2379, :2181).

    PYTHONPATH=src python bench/etcd_zk_latency.py

Per backend: 200 uncontended acquire+release, 200 renews, 50 hand-offs (a release's start to the
waiting holder's grant); p50 and p99 in milliseconds.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from meshkit.coord.etcd import EtcdLocks
from meshkit.coord.zookeeper import ZooKeeperLocks


def pct(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000


def backend(kind: str) -> Any:
    if kind == "etcd":
        return EtcdLocks("127.0.0.1:2379", prefix="/meshkit-bench")
    return ZooKeeperLocks("127.0.0.1:2181", prefix="/meshkit-bench")


async def run(kind: str) -> None:
    a, b = backend(kind), backend(kind)
    name = uuid.uuid4().hex
    cycle, renew, handoff = [], [], []
    for _ in range(200):
        started = time.perf_counter()
        await a.release(await a.acquire(name, "a", 10.0, 0))
        cycle.append(time.perf_counter() - started)
    grant = await a.acquire(name, "a", 10.0, 0)
    for _ in range(200):
        started = time.perf_counter()
        await a.renew(grant)
        renew.append(time.perf_counter() - started)
    await a.release(grant)
    for _ in range(50):
        grant = await a.acquire(name, "a", 10.0, None)
        waiter = asyncio.create_task(b.acquire(name, "b", 10.0, None))
        await asyncio.sleep(0.05)  # the waiter queues
        started = time.perf_counter()
        await a.release(grant)
        second = await waiter
        handoff.append(time.perf_counter() - started)
        await b.release(second)
    await a.close()
    await b.close()
    print(
        f"{kind}: acquire+release p50 {pct(cycle, 0.5):.1f} ms p99 {pct(cycle, 0.99):.1f} ms; "
        f"renew p50 {pct(renew, 0.5):.1f} ms; hand-off p50 {pct(handoff, 0.5):.1f} ms p99 {pct(handoff, 0.99):.1f} ms"
    )


if __name__ == "__main__":
    for kind in ("etcd", "zk"):
        asyncio.run(run(kind))
