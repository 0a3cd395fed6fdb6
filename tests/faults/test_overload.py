"""Overload at 10x capacity under network faults: the adaptive shedder keeps goodput and the
admitted calls' latency while the wire adds jitter and every connection is reset halfway.
Reuses bench/overload.py's service (2 ms of I/O + 4 ms of CPU a call) and load generator."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import random
from types import ModuleType

import pytest

from meshkit.testing import FaultProxy
from tests.faults.conftest import ROOT, Reliability

DURATION = 4.0


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("overload_bench", ROOT / "bench" / "overload.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.timeout(180)
async def test_ten_times_capacity_under_faults_keeps_goodput(reliability: Reliability) -> None:
    bench = _bench()
    pinned = hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) >= 2
    before = os.sched_getaffinity(0) if pinned else None
    if pinned:
        os.sched_setaffinity(0, {1})  # the load on cpu1, the server (bench.ServerProcess) on cpu0
    try:
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
                loop = asyncio.get_running_loop()
                loop.call_later(DURATION / 2, proxy.reset_all)  # every connection reset halfway
                tally = await bench.open_loop(proxy.address, capacity * 10, DURATION)
        finally:
            server.stop()
    finally:
        if before is not None:
            os.sched_setaffinity(0, before)
    unloaded_p99 = bench.p99(unloaded.ok)
    goodput = len(tally.ok) / DURATION / capacity
    ratio = bench.p99(tally.ok) / unloaded_p99
    reliability.record(
        "overload at 10x under faults",
        f"open loop at 10x capacity (C = {capacity:.0f}/s, 2 ms I/O + 4 ms CPU a call) for {DURATION:g} s, "
        "through 2 ms ± 2 ms of wire jitter, every connection reset halfway; shedding on",
        "goodput held; admitted p99 bounded",
        f"goodput {goodput:.0%} of C; admitted p99 {ratio:.1f}x the unloaded p99 "
        f"({bench.p99(tally.ok) * 1000:.1f} ms); refused {tally.codes.get('RESOURCE_EXHAUSTED', 0)}, "
        f"other errors {sum(v for k, v in tally.codes.items() if k != 'RESOURCE_EXHAUSTED')}",
    )
    # Without shedding the same load collapses to 1-14 % of C (docs/benchmarks.md); with it, and
    # clean wires, 95 %. The bounds leave room for the faults and a noisy 2-vCPU runner.
    figures = (goodput, ratio, bench.p99(tally.ok), unloaded_p99, len(unloaded.ok), dict(tally.codes))
    assert goodput >= 0.5, figures
    assert ratio <= 5.0, figures
