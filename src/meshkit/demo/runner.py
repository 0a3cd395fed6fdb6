"""``meshkit demo``: start inventory and order in their own processes, drive order, show it live.

Every child process is started here and stopped here, by PID, on exit or Ctrl-C.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table

from meshkit.demo.services import SKUS, Order, OrderRequest
from meshkit.demo.stats import RollingStats
from meshkit.errors import RpcError
from meshkit.rpc.client import Client
from meshkit.transport.loop import run as run_loop


@dataclass
class Child:
    name: str
    process: subprocess.Popen[str]
    address: str


def _spawn(name: str, service: str, env: dict[str, str] | None = None, timeout: float = 15.0) -> Child:
    cmd = [sys.executable, "-m", "meshkit", "run", service, "--port", "0", "--no-access-log", "--log-level", "WARNING"]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=None,
        text=True,
        env={**os.environ, **(env or {})},
        start_new_session=True,  # Ctrl-C in the terminal reaches only us; we stop the children
    )
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if " on " in line and line.startswith("meshkit: serving"):
            return Child(name, proc, line.rsplit(" on ", 1)[1].strip())
    _stop([Child(name, proc, "?")])
    raise RuntimeError(f"demo: {name} did not start (exit code {proc.poll()})")


def _stop(children: list[Child]) -> None:
    for child in children:
        if child.process.poll() is None:
            child.process.send_signal(signal.SIGTERM)
    for child in children:
        try:
            child.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            child.process.kill()
            child.process.wait()


def _view(stats: RollingStats, children: list[Child], started: float, concurrency: int) -> Panel:
    now = time.monotonic()
    table = Table(show_header=True, header_style="bold")
    for col in ("calls/s", "p50 ms", "p99 ms", "error %", "total ok", "errors"):
        table.add_column(col, justify="right")
    p50 = stats.percentile(now, 0.5)
    p99 = stats.percentile(now, 0.99)
    table.add_row(
        f"{stats.rate(now):,.0f}",
        "-" if p50 is None else f"{p50 * 1000:.2f}",
        "-" if p99 is None else f"{p99 * 1000:.2f}",
        f"{stats.error_rate(now) * 100:.2f}",
        f"{stats.total_ok:,}",
        ", ".join(f"{k}={v}" for k, v in stats.total_errors.most_common()) or "0",
    )
    procs = Table(show_header=True, header_style="bold")
    for col in ("process", "pid", "address", "state"):
        procs.add_column(col)
    for child in children:
        state = "running" if child.process.poll() is None else f"exited {child.process.returncode}"
        procs.add_row(child.name, str(child.process.pid), child.address, state)
    title = f"meshkit demo — client → order → inventory — {now - started:.0f}s, {concurrency} callers — Ctrl-C stops"
    return Panel(Group(table, procs), title=title)


async def _drive(target: str, stats: RollingStats, concurrency: int, rate: float, stop: asyncio.Event) -> None:
    client = Client(target=target, timeout=2.0, middleware=[])
    order = client.proxy(Order)
    rng = random.Random(7)
    interval = concurrency / rate if rate > 0 else 0.0

    async def worker(n: int) -> None:
        next_at = time.monotonic() + interval * n / concurrency
        while not stop.is_set():
            if interval:
                delay = next_at - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                next_at += interval
            start = time.perf_counter()
            error = None
            try:
                await order.place(
                    OrderRequest(customer=f"c{rng.randrange(1000)}", sku=rng.choice(SKUS), qty=rng.randint(1, 5))
                )
            except RpcError as exc:
                error = exc.code.name
            stats.record(time.monotonic(), time.perf_counter() - start, error)

    try:
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
    finally:
        await client.close()


async def _main(duration: float | None, concurrency: int, rate: float, console: Console) -> int:
    children: list[Child] = []
    try:
        inventory = _spawn("inventory", "meshkit.demo.services:Inventory")
        children.append(inventory)
        order = _spawn("order", "meshkit.demo.services:Order", env={"INVENTORY_TARGET": inventory.address})
        children.append(order)
        console.print(
            f"[bold]meshkit demo[/]: inventory on {inventory.address} (pid {inventory.process.pid}), "
            f"order on {order.address} (pid {order.process.pid})"
        )
        stats = RollingStats()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        driver = asyncio.create_task(_drive(order.address, stats, concurrency, rate, stop))
        started = time.monotonic()
        interactive = console.is_terminal and duration is None
        if interactive:
            with Live(_view(stats, children, started, concurrency), console=console, refresh_per_second=4) as live:
                while not stop.is_set():
                    await asyncio.sleep(0.25)
                    live.update(_view(stats, children, started, concurrency))
        else:
            end = started + (duration if duration is not None else float("inf"))
            while not stop.is_set() and time.monotonic() < end:
                await asyncio.sleep(min(1.0, max(0.0, end - time.monotonic())))
                now = time.monotonic()
                p50, p99 = stats.percentile(now, 0.5), stats.percentile(now, 0.99)
                console.print(
                    f"t={now - started:5.1f}s calls/s={stats.rate(now):7.0f} "
                    f"p50={'-' if p50 is None else f'{p50 * 1000:.2f}ms'} "
                    f"p99={'-' if p99 is None else f'{p99 * 1000:.2f}ms'} "
                    f"ok={stats.total_ok} errors={dict(stats.total_errors)}"
                )
            stop.set()
        await driver
        console.print(_view(stats, children, started, concurrency))
        return 0 if stats.total_ok > 0 else 1
    finally:
        _stop(children)


def run_demo(duration: float | None = None, concurrency: int = 8, rate: float = 200.0) -> int:
    console = Console()
    try:
        return run_loop(_main(duration, concurrency, rate, console))
    except RuntimeError as exc:
        console.print(f"[red]{exc}[/]")
        return 1
