"""Overload benchmark: open-loop load at 2x and 10x a service's capacity, with and without the
adaptive shedder. ``python bench/overload.py [--duration 6] [--json out.json]``.

The service does what a Python handler typically does: awaits I/O (2 ms) and computes (4 ms of
CPU in four slices, so calls interleave). The server runs on cpu0, the load generator on cpu1.

1. capacity C: closed loop, 64 staggered callers, no shedding;  unloaded p99: open loop at 0.2 x C;
2. open loop at 2 x C and 10 x C (each call with a 1 s deadline), a fresh server each time,
   with ``Policy()`` (shedding on, defaults) and without.

Reported: goodput (answers within the deadline per second) / C, admitted p99 / unloaded p99,
the server time of a refusal (p99 of the whole dispatch of a refused call) and what happened
to the rest. Results go to docs/benchmarks.md by hand, with this command.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import platform
import random
import statistics
import sys
import time
from typing import Any

from meshkit import Client, RpcError, Server, Service, StatusCode, rpc
from meshkit.testing import ChildNotReady, spawn

IO_WAIT = float(os.environ.get("OVERLOAD_IO_MS", "2")) / 1000
CPU_SLICES = int(os.environ.get("OVERLOAD_SLICES", "4"))
SLICE = float(os.environ.get("OVERLOAD_SLICE_MS", "1")) / 1000
DEADLINE = 1.0


def burn(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


class Work(Service, name="work"):
    def __init__(self) -> None:
        self.server: Server | None = None
        self.refusal_times: list[float] = []
        self.rng = random.Random(1)
        self.started = (time.perf_counter(), time.process_time(), os.times())

    @rpc
    async def work(self, n: int) -> int:
        await asyncio.sleep(self.rng.expovariate(1 / IO_WAIT))  # I/O time varies, as a database's does
        for _ in range(CPU_SLICES):
            burn(SLICE)
            await asyncio.sleep(0)
        return n

    @rpc
    async def stats(self) -> dict[str, Any]:
        times = sorted(self.refusal_times)
        policy = self.server.policy if self.server is not None else None
        wall0, cpu0, t0 = self.started
        t1 = os.times()
        wall = time.perf_counter() - wall0
        return {
            "cpu_use": round((time.process_time() - cpu0) / wall, 3),
            "sys_share": round((t1.system - t0.system) / wall, 3),
            "refusals": len(times),
            "refusal_p50_us": times[len(times) // 2] * 1e6 if times else None,
            "refusal_p99_us": times[int(len(times) * 0.99)] * 1e6 if times else None,
            "refusal_max_us": times[-1] * 1e6 if times else None,
            "policy": policy.snapshot() if policy is not None else None,
        }


async def serve(shed: bool) -> None:
    from meshkit.policy import Policy, PolicyConfig, Shedding, Switches

    work = Work()
    tuning = json.loads(os.environ.get("OVERLOAD_SHEDDING", "{}"))  # e.g. '{"cpu_busy": 0.95}'
    shedding = Shedding(enabled=True, **tuning)
    policy = Policy(PolicyConfig(shedding=shedding), switches=Switches()) if shed else None
    server = Server([work], port=0, middleware=[], policy=policy)
    work.server = server
    dispatch = server._dispatch
    shedder = policy.shedder if policy is not None else None
    clock = time.perf_counter

    def timed(conn: Any, frame: Any) -> None:  # the server time of each refused call
        before = shedder.rejected if shedder is not None else 0
        start = clock()
        dispatch(conn, frame)
        if shedder is not None and shedder.rejected != before:
            work.refusal_times.append(clock() - start)

    server._dispatch = timed  # type: ignore[method-assign]
    server._listener._dispatch = timed  # type: ignore[attr-defined]
    await server.start()
    print(server.address, flush=True)
    if os.environ.get("OVERLOAD_TRACE") and shedder is not None:
        while True:  # the controller's course, for tuning: limit, in flight, baseline, refusals
            await asyncio.sleep(0.2)
            print(
                f"limit={shedder.limit:.1f} in_flight={shedder.in_flight} base={shedder.baseline}"
                f" rejected={shedder.rejected} probing={shedder.probing}",
                file=sys.stderr,
            )
    await asyncio.Event().wait()


class Tally:
    def __init__(self) -> None:
        self.ok: list[float] = []
        self.ok_steady: list[float] = []  # calls sent after the first second (the start-up transient)
        self.t0 = time.perf_counter()
        self.codes: collections.Counter[str] = collections.Counter()
        self.refused: list[float] = []


async def one(proxy: Any, tally: Tally, i: int) -> None:
    start = time.perf_counter()
    try:
        await proxy.work(i)
    except RpcError as exc:
        tally.codes[exc.code.name] += 1
        if exc.code is StatusCode.RESOURCE_EXHAUSTED:
            tally.refused.append(time.perf_counter() - start)
        return
    latency = time.perf_counter() - start
    tally.ok.append(latency)
    if start - tally.t0 >= 1.0:
        tally.ok_steady.append(latency)


async def open_loop(address: str, rate: float, duration: float) -> Tally:
    tally = Tally()
    async with Client(target=address, middleware=[], timeout=DEADLINE) as client:
        proxy = client.proxy(Work)
        await proxy.work(0)  # connected
        loop = asyncio.get_running_loop()
        start = loop.time()
        tally.t0 = time.perf_counter()
        sent = 0
        tasks: set[asyncio.Task[None]] = set()
        while (elapsed := loop.time() - start) < duration:
            due = int(elapsed * rate)
            while sent < due:
                task = loop.create_task(one(proxy, tally, sent))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                sent += 1
            await asyncio.sleep(0.001)
        await asyncio.gather(*tasks)
    return tally


async def closed_loop(address: str, callers: int, duration: float) -> float:
    async with Client(target=address, middleware=[], timeout=10) as client:
        proxy = client.proxy(Work)
        await proxy.work(0)
        done = 0
        end = time.perf_counter() + duration

        async def caller(i: int) -> None:
            nonlocal done
            await asyncio.sleep(i * 0.001)  # staggered: callers that start together stay in lock-step (a convoy)
            while time.perf_counter() < end:
                await proxy.work(1)
                done += 1

        start = time.perf_counter()
        await asyncio.gather(*(caller(i) for i in range(callers)))
        return done / (time.perf_counter() - start)


def p99(values: list[float]) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * 0.99))] if values else float("nan")


class ServerProcess:
    def __init__(self, shed: bool) -> None:
        cmd = [sys.executable, __file__, "--serve"] + (["--shed"] if shed else [])
        # the workload (OVERLOAD_* variables) reaches the server through the environment
        if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) >= 2:
            cmd = ["taskset", "-c", "0", *cmd]
        try:
            self.proc = spawn(cmd, name="the server", ready=r"^([\d.]+:\d+)$", new_session=False, grace=10, timeout=30)
        except ChildNotReady as exc:
            raise SystemExit(str(exc)) from None
        assert self.proc.ready_match is not None
        self.address = self.proc.ready_match[1]

    async def stats(self) -> dict[str, Any]:
        async with Client(target=self.address, middleware=[]) as client:
            result: dict[str, Any] = await client.proxy(Work).stats()
            return result

    def stop(self) -> None:
        self.proc.stop()


async def scenario(shed: bool, rate: float, duration: float, capacity: float, unloaded_p99: float) -> dict[str, Any]:
    server = ServerProcess(shed)
    try:
        tally = await open_loop(server.address, rate, duration)
        stats = await server.stats()
    finally:
        server.stop()
    goodput = len(tally.ok) / duration
    return {
        "shedding": shed,
        "offered_per_s": round(rate),
        "load": round(rate / capacity, 1),
        "goodput_per_s": round(goodput, 1),
        "goodput_of_capacity": round(goodput / capacity, 3),
        "admitted_p50_ms": round(statistics.median(tally.ok) * 1000, 2) if tally.ok else None,
        "admitted_p99_ms": round(p99(tally.ok) * 1000, 2) if tally.ok else None,
        "admitted_p99_vs_unloaded": round(p99(tally.ok) / unloaded_p99, 2) if tally.ok else None,
        "steady_p99_ms": round(p99(tally.ok_steady) * 1000, 2) if tally.ok_steady else None,
        "steady_p99_vs_unloaded": round(p99(tally.ok_steady) / unloaded_p99, 2) if tally.ok_steady else None,
        "errors": dict(tally.codes),
        "refusal_client_p99_ms": round(p99(tally.refused) * 1000, 3) if tally.refused else None,
        "refusal_server_p50_us": round(stats["refusal_p50_us"], 1) if stats["refusal_p50_us"] else None,
        "refusal_server_p99_us": round(stats["refusal_p99_us"], 1) if stats["refusal_p99_us"] else None,
        "refusal_server_max_us": round(stats["refusal_max_us"], 1) if stats["refusal_max_us"] else None,
        "final_limit": (stats["policy"] or {}).get("shedder"),
        "server_cpu_use": stats["cpu_use"],
        "server_sys_share": stats["sys_share"],
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {1})
    server = ServerProcess(shed=False)
    try:
        capacity = await closed_loop(server.address, 64, args.duration)
    finally:
        server.stop()
    server = ServerProcess(shed=False)
    try:
        unloaded = await open_loop(server.address, capacity * 0.2, args.duration)
    finally:
        server.stop()
    unloaded_p99 = p99(unloaded.ok)
    print(
        f"capacity {capacity:.0f} calls/s; unloaded (0.2 x C) p50 {statistics.median(unloaded.ok) * 1000:.2f} ms"
        f" p99 {unloaded_p99 * 1000:.2f} ms",
        flush=True,
    )
    rows = []
    for shed in (True, False):
        for load in args.loads:
            row = await scenario(shed, capacity * load, args.duration, capacity, unloaded_p99)
            print(json.dumps(row), flush=True)
            rows.append(row)
    return {
        "command": "python bench/overload.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.machine()} {os.cpu_count()} cpus, Python {platform.python_version()}",
        "work": f"I/O {IO_WAIT * 1000:.0f} ms mean (exponential) + {CPU_SLICES} x {SLICE * 1000:.0f} ms CPU per call",
        "deadline_s": DEADLINE,
        "capacity_per_s": round(capacity, 1),
        "unloaded_p50_ms": round(statistics.median(unloaded.ok) * 1000, 2),
        "unloaded_p99_ms": round(unloaded_p99 * 1000, 2),
        "rows": rows,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=6.0, help="seconds per run (default 6)")
    parser.add_argument("--loads", type=float, nargs="+", default=[2.0, 10.0], help="multiples of capacity")
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--shed", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    from meshkit.transport.loop import run

    if args.serve:
        run(serve(args.shed))
        sys.exit(0)
    result = run(main(args))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
