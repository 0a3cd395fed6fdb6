"""The measurement itself, inside the load process: closed-loop callers, the measured window and
the CPU time both sides spend on it.

Kept apart from the rest of the harness because it is the one part on the measured path: every
system's ``load`` runs it, and what it does per call (two clock reads and an append) is what the
numbers include.
"""

from __future__ import annotations

import asyncio
import os
import time
from array import array
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from meshkit.benchmark.results import summarize

_WARMUP, _MEASURE, _STOP = 0, 1, 2
#: The load process finds the server process's pid here, to read its CPU time (Linux /proc).
SERVER_PID_ENV = "MESHKIT_BENCH_SERVER_PID"
_TICK_NS = 1_000_000_000 // (os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100)


async def closed_loop(
    fn: Callable[[Any], Awaitable[Any]], arg: Any, concurrency: int, duration: float, warmup: float
) -> dict[str, Any]:
    """Run ``concurrency`` tasks that each ``await fn(arg)`` back to back; measure after ``warmup``.

    A call counts when it completes inside the measured window; its latency (``perf_counter_ns``
    around the await, so building the request and decoding the answer are included) goes into one
    shared ``array('q')``, which keeps the per-call bookkeeping to two clock reads and an append.
    Any exception in a caller ends the run and propagates.
    """
    phase = [_WARMUP]
    latencies = array("q")

    async def caller() -> None:
        record = latencies.append
        clock = time.perf_counter_ns
        while True:
            t0 = clock()
            await fn(arg)
            t1 = clock()
            p = phase[0]
            if p == _MEASURE:
                record(t1 - t0)
            elif p == _STOP:
                return

    tasks = [asyncio.ensure_future(caller()) for _ in range(concurrency)]
    try:
        await _run_phase(tasks, warmup)
        phase[0] = _MEASURE
        server_pid = int(os.environ.get(SERVER_PID_ENV) or 0)
        server0 = process_cpu_ns(server_pid)
        cpu0 = time.process_time_ns()
        start = time.perf_counter_ns()
        await _run_phase(tasks, duration)
        phase[0] = _STOP
        elapsed_ns = time.perf_counter_ns() - start
        cpu_ns = time.process_time_ns() - cpu0
        server1 = process_cpu_ns(server_pid)
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
    result = summarize(latencies, elapsed_ns)
    result["client_cpu"] = round(cpu_ns / elapsed_ns, 3) if elapsed_ns else 0.0
    calls = result["calls"]
    # CPU time per call on each side: steadier than calls/s on a noisy VM, and it says which
    # side pays for what (a call's cost in one process does not slow the other).
    result["client_cpu_us_per_call"] = round(cpu_ns / 1000 / calls, 3) if calls else None
    if server0 is not None and server1 is not None and calls:
        result["server_cpu_us_per_call"] = round((server1 - server0) / 1000 / calls, 3)
    return result


def process_cpu_ns(pid: int) -> int | None:
    """User + system CPU time of process ``pid`` (all its threads) from /proc, or None."""
    if not pid:
        return None
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rpartition(b")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) * _TICK_NS  # utime and stime: fields 14 and 15 of stat


async def _run_phase(tasks: Sequence[asyncio.Future[None]], seconds: float) -> None:
    """Let the callers run for ``seconds``; a caller that ends early has failed, so re-raise."""
    done, _ = await asyncio.wait(tasks, timeout=seconds, return_when=asyncio.FIRST_EXCEPTION)
    for task in done:
        task.result()  # raises the caller's exception
    if done:
        raise RuntimeError("a caller stopped before the measurement ended")
