"""Overload under network faults: open loop at 10x capacity through a FaultProxy that adds
2 ms ± 2 ms of jitter and resets every connection halfway, shedding on.
``python bench/overload_faults.py [--duration 4] [--json out.json]``.

Reuses bench/overload.py's service (2 ms of I/O + 4 ms of CPU a call), server process and load
generator. Reported: goodput (answers within the 1 s deadline per second) / capacity C, and the
admitted calls' p99 / the unloaded p99 (both through the same jittery wire). The fault suite's
scenario (tests/faults/test_overload.py) runs this and checks what must hold whatever the
machine; the figures are this script's, reported in docs/benchmarks.md with the command.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import random
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from meshkit.testing import FaultProxy

HERE = Path(__file__).resolve().parent


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("overload_bench", HERE / "overload.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def measure(duration: float) -> dict[str, Any]:
    """One run, in this process: a fresh process, because a load generator inside a test process
    measures that process too (a full collection of everything a suite built, 100+ ms, showed up
    as the server's latency)."""
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
            asyncio.get_running_loop().call_later(duration / 2, proxy.reset_all)  # every connection reset halfway
            tally = await bench.open_loop(proxy.address, capacity * 10, duration)
    finally:
        server.stop()
    admitted_p99 = bench.p99(tally.ok)
    unloaded_p99 = bench.p99(unloaded.ok)
    return {
        "duration": duration,
        "deadline": bench.DEADLINE,
        "capacity": capacity,
        "unloaded_p99": unloaded_p99,
        "unloaded_calls": len(unloaded.ok),
        "admitted": len(tally.ok),
        "admitted_p99": admitted_p99,
        "goodput_of_capacity": len(tally.ok) / duration / capacity,
        "p99_vs_unloaded": admitted_p99 / unloaded_p99,
        "codes": dict(tally.codes),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/overload_faults.py", description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=4.0, help="seconds of 10x load (default 4)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    args = parser.parse_args(argv)
    run = asyncio.run(measure(args.duration))
    refused = run["codes"].get("RESOURCE_EXHAUSTED", 0)
    other = {k: v for k, v in run["codes"].items() if k != "RESOURCE_EXHAUSTED"}
    print(
        f"capacity C {run['capacity']:.0f} calls/s; 10x C for {run['duration']:g} s through 2 ms ± 2 ms jitter, "
        f"every connection reset halfway\n"
        f"goodput {run['goodput_of_capacity']:.1%} of C; admitted p99 {run['admitted_p99'] * 1000:.1f} ms = "
        f"{run['p99_vs_unloaded']:.2f}x the unloaded p99 ({run['unloaded_p99'] * 1000:.1f} ms); "
        f"refused {refused}; other {other or 'none'}"
    )
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(run, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
