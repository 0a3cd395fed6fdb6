"""The measurement of the overload scenario, run in a process of its own
(``python -m tests.faults.overload_run``, one JSON line on stdout): a load generator inside the
test process measured the test process too (a full garbage collection of everything the suite
built before it, 100+ ms, showed up as the server's latency)."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import random
from pathlib import Path
from types import ModuleType
from typing import Any

from meshkit.testing import FaultProxy

ROOT = Path(__file__).resolve().parents[2]
DURATION = 4.0


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("overload_bench", ROOT / "bench" / "overload.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def measure() -> dict[str, Any]:
    bench = _bench()
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {1})  # the load on cpu1, the server (bench.ServerProcess) on cpu0
    server = bench.ServerProcess(shed=False)
    try:
        capacity = await bench.closed_loop(server.address, 64, 2.0)
    finally:
        server.stop()
    server = bench.ServerProcess(shed=True)
    try:
        async with FaultProxy(server.address, rng=random.Random(5)) as proxy:
            proxy.latency(0.002, jitter=0.002)
            # The reference p99: ~200 calls, so that it is not one unlucky sample.
            unloaded = await bench.open_loop(proxy.address, capacity * 0.3, 3.0)
            asyncio.get_running_loop().call_later(DURATION / 2, proxy.reset_all)  # every connection reset halfway
            tally = await bench.open_loop(proxy.address, capacity * 10, DURATION)
    finally:
        server.stop()
    return {
        "duration": DURATION,
        "capacity": capacity,
        "unloaded_p99": bench.p99(unloaded.ok),
        "unloaded_calls": len(unloaded.ok),
        "admitted": len(tally.ok),
        "admitted_p99": bench.p99(tally.ok),
        "codes": dict(tally.codes),
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(measure())))
