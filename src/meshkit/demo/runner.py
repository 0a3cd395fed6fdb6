"""``meshkit demo``: start inventory and order in their own processes, drive order, show it live.

Every child process is started here and stopped here, by PID, on exit or Ctrl-C.
"""

from __future__ import annotations

import asyncio
import errno
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.measure import Measurement
from rich.panel import Panel
from rich.table import Table

from meshkit.config import ConfigStore
from meshkit.demo.driver import Spread, Traces, drive
from meshkit.demo.restock import RestockLeader
from meshkit.demo.services import DEMO_API_KEY, OUT_OF_STOCK, gateway_config
from meshkit.demo.stats import RollingStats
from meshkit.errors import RpcError
from meshkit.rpc.client import Client
from meshkit.testing.spawn import ChildNotReady, ChildProcess, spawn
from meshkit.transport.loop import run as run_loop

#: Where ``curl localhost:8080/api/orders`` finds the demo (``meshkit demo --gateway-port``).
DEFAULT_GATEWAY_PORT = 8080
GATEWAY_HOST = "127.0.0.1"  # the gateway config's default host
_SERVING = re.compile(r"meshkit: (?:(?:registry )?serving .*?on |gateway on http://)(\S+)")
_ADMIN = re.compile(r"meshkit: admin on (\S+)")


@dataclass
class Child:
    name: str
    process: ChildProcess
    address: str
    admin: str = ""  # http://host:port of its /metrics, /healthz, /readyz


def _spawn(
    name: str, args: list[str], env: dict[str, str] | None = None, timeout: float = 15.0, port: int = 0
) -> Child:
    cmd = [sys.executable, "-m", "meshkit", *args, "--port", str(port), "--log-level", "WARNING"]
    # Its own session: Ctrl-C in the terminal reaches only us; we stop the children. Its stderr is
    # the terminal's, so a child that cannot start says why above our one line.
    try:
        process = spawn(cmd, name=name, env=env, ready=_SERVING, timeout=timeout)
    except ChildNotReady as exc:
        raise RuntimeError(f"demo: {name} did not start (exit code {exc.returncode})") from None
    assert process.ready_match is not None
    child = Child(name, process, process.ready_match[1])
    if "--admin-port" in args:
        try:
            child.admin = process.expect(_ADMIN, timeout=timeout)[1]
        except ChildNotReady:
            pass
    return child


class DemoError(RuntimeError):
    """Why the demo cannot run, in one line for the person who started it."""


def _bind(host: str, port: int) -> int:
    """Bind ``host:port`` the way the gateway does (SO_REUSEADDR) and let go: the port bound
    (a free one for 0), or the OSError the gateway would meet."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        return int(sock.getsockname()[1])


def pick_gateway_port(requested: int | None, console: Console) -> int:
    """The port the demo's gateway is to listen on, decided before any process starts.
    ``requested`` None: DEFAULT_GATEWAY_PORT or, when that is taken, a free port, said in one
    line. A port asked for is that port (0: any free one); one the gateway cannot have is a
    DemoError naming it, not a process dying with a traceback."""
    port = DEFAULT_GATEWAY_PORT if requested is None else requested
    if port == 0:
        return 0
    try:
        return _bind(GATEWAY_HOST, port)
    except OSError as exc:
        if requested is not None or exc.errno != errno.EADDRINUSE:
            raise DemoError(
                f"demo: the gateway cannot listen on {GATEWAY_HOST}:{port}: {exc.strerror or exc}"
                " (choose another with --gateway-port, or 0 for any free port)"
            ) from None
    free = _bind(GATEWAY_HOST, 0)
    console.print(f"demo: port {port} is taken; the gateway uses port {free} instead", soft_wrap=True)
    return free


def _start_gateway(registry: str, port: int, env: dict[str, str], workdir: str) -> Child:
    """The demo's entry point: ``meshkit gateway`` on ``port`` (see ``pick_gateway_port``)."""
    config = Path(workdir) / "gateway.toml"
    config.write_text(gateway_config(registry, port))
    args = ["gateway", "--config", str(config), "--admin-port", "0"]
    try:
        return _spawn("gateway", args, env=env, port=port)
    except RuntimeError as exc:
        raise DemoError(f"{exc}; it was to listen on {GATEWAY_HOST}:{port} (see its error above)") from None


def _stop(children: list[Child]) -> None:
    """Stop in reverse start order (callers before callees, the registry last), each by PID."""
    for child in reversed(children):
        child.process.stop(grace=5)


class Breakers:
    """The order process's circuit breakers, polled from its meshkit-admin service."""

    def __init__(self) -> None:
        self.states: dict[str, str] = {}

    async def poll(self, target: str, stop: asyncio.Event) -> None:
        async with Client(target=target, timeout=1.0, middleware=[]) as client:
            while not stop.is_set():
                try:
                    status = await client.call("meshkit-admin", "status")
                    self.states = dict(status.get("breakers", {}))
                except RpcError:
                    pass  # the view keeps the last known states
                await asyncio.sleep(0.25)

    def line(self) -> str:
        return " ".join(f"{name}={state}" for name, state in self.states.items()) or "-"

    def of(self, address: str) -> str:
        return next((s for n, s in self.states.items() if n.endswith(f"@{address}")), "")


def _view(
    stats: RollingStats,
    spread: Spread,
    children: list[Child],
    started: float,
    concurrency: int,
    breakers: Breakers | None = None,
    note: str = "",
    restock: RestockLeader | None = None,
) -> Panel:
    now = time.monotonic()
    table = Table(show_header=True, header_style="bold")
    for col in ("calls/s", "p50 ms", "p99 ms", "error %", "total ok", OUT_OF_STOCK, "errors"):
        table.add_column(col, justify="right")
    p50 = stats.percentile(now, 0.5)
    p99 = stats.percentile(now, 0.99)
    table.add_row(
        f"{stats.rate(now):,.0f}",
        "-" if p50 is None else f"{p50 * 1000:.2f}",
        "-" if p99 is None else f"{p99 * 1000:.2f}",
        f"{stats.error_rate(now) * 100:.2f}",
        f"{stats.total_ok:,}",
        f"{stats.total_expected[OUT_OF_STOCK]:,}",
        ", ".join(f"{k}={v}" for k, v in stats.total_errors.most_common()) or "0",
    )
    procs = Table(show_header=True, header_style="bold")
    for col in ("process", "pid", "address", "state", "calls/s served", "breaker (in order)", "restock job"):
        procs.add_column(col)
    served = spread.last_second(now)
    for child in children:
        code = child.process.returncode
        state = "running" if code is None else f"exited {code}"
        share = served.get(f"inventory-{child.process.pid}")
        breaker = breakers.of(child.address) if breakers is not None else ""
        style = {"open": "[red]", "half_open": "[yellow]", "closed": "[green]"}.get(breaker, "")
        procs.add_row(
            child.name,
            str(child.process.pid),
            child.address,
            state,
            "" if share is None else str(share),
            f"{style}{breaker}" if breaker else "",
            "leader" if restock is not None and restock.leader == f"inventory-{child.process.pid}" else "",
        )
    title = (
        f"meshkit demo — HTTP → gateway → order → 2 inventories — {now - started:.0f}s, {concurrency} callers — Ctrl-C"
    )
    parts: list[RenderableType] = [table, procs]
    if note:
        parts.append(note)
    return Panel(Group(*parts), title=title)


async def _chaos(target: str, mode: str) -> None:
    async with Client(target=target, timeout=2.0, middleware=[]) as client:
        await client.call("inventory", "chaos", {"mode": mode})


#: The inventories' live policy: its key in the registry's store, and what it starts as (what
#: running with no policy means: no limits, no shedding).
LIVE_KEY = "policy/inventory"
LIVE_POLICY = "# the inventories' live policy (docs/configuration.md)\n[shedding]\nenabled = false\n"


def limit_policy(rate: float) -> str:
    return f'{LIVE_POLICY}[server."inventory.reserve"]\nlimit = {{ rate = {rate:g} }}\n'


async def _put_limit(console: Console, url: str, rate: float, at: float) -> None:
    """Change the inventories' limit live, as a user would: with ``meshkit config put``."""
    argv = [sys.executable, "-m", "meshkit", "config", "put", LIVE_KEY, "--store", url, "--policy"]
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await proc.communicate(limit_policy(rate).encode())
    said = out.decode().strip() if proc.returncode == 0 else f"failed: {err.decode().strip()}"
    console.print(
        f"t={at:5.1f}s meshkit config put {LIVE_KEY} --store {url} --policy  <  inventory.reserve limit "
        f"{rate:g}/s per instance -> revision {said}",
        soft_wrap=True,
        markup=False,
    )


async def _main(
    duration: float | None,
    concurrency: int,
    rate: float,
    kill_after: float | None,
    console: Console,
    fault: str | None = None,
    fault_after: float = 5.0,
    fault_for: float = 10.0,
    otlp: str | None = None,
    requested_port: int | None = None,
    live_limit: float | None = None,
    live_limit_after: float = 5.0,
) -> int:
    port = pick_gateway_port(requested_port, console)  # before any process starts: a bad port fails fast
    children: list[Child] = []
    workdir = tempfile.mkdtemp(prefix="meshkit-demo-")
    traces: Traces | None = None
    provider: Any = None
    otel: dict[str, str] = {}
    if otlp:
        from meshkit.observe import tracing

        endpoint = otlp.rstrip("/") + "/v1/traces"
        # Given to the children only (and spelled out, so a user's OTEL_* settings cannot win).
        otel = {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": endpoint}
        otel["OTEL_BSP_SCHEDULE_DELAY"] = "500"
        # The driver decides which requests are traced and says so in traceparent; no process
        # starts traces of its own.
        otel["OTEL_TRACES_SAMPLER"] = "parentbased_traceidratio"
        otel["OTEL_TRACES_SAMPLER_ARG"] = "0"
        provider = tracing.configure("demo-client", "otlp", endpoint=endpoint, ratio=0.0)
        traces = Traces()
    try:
        registry = _spawn("registry", ["registry"], env=otel)
        children.append(registry)
        url = f"meshkit://{registry.address}"
        service = "meshkit.demo.services:Inventory"
        admin = ["--admin-port", "0"]
        # The inventories' policy is live: a key of the registry's configuration store.
        async with ConfigStore(url) as store:
            await store.put(LIVE_KEY, LIVE_POLICY)
        live_policy = ["--policy", f"{url}/{LIVE_KEY}"]
        for n in (1, 2):
            children.append(
                _spawn(
                    f"inventory-{n}",
                    [
                        "run",
                        service,
                        "--registry",
                        url,
                        "--no-access-log",
                        *admin,
                        *live_policy,
                        "--instance-id",
                        f"inventory-{n}",
                    ],
                    env={
                        **otel,
                        "OTEL_SERVICE_NAME": f"inventory-{n}",
                        "MESHKIT_DEMO_COORD": url,
                        "MESHKIT_CACHE_DIR": os.path.join(workdir, "policy-cache"),
                    },
                )
            )
        order = _spawn(
            "order",
            ["run", "meshkit.demo.services:Order", "--registry", url, "--no-access-log", *admin],
            env={**otel, "INVENTORY_REGISTRY": url, "OTEL_SERVICE_NAME": "order"},
        )
        children.append(order)
        gateway = _start_gateway(url, port, {**otel, "OTEL_SERVICE_NAME": "gateway"}, workdir)
        children.append(gateway)
        api = f"http://{gateway.address}"
        console.print(
            f"[bold]meshkit demo[/]: gateway on {api} (pid {gateway.process.pid}; API docs: {api}/docs), "
            f"registry on {registry.address}, "
            + ", ".join(f"{c.name} on {c.address} (pid {c.process.pid})" for c in children[1:-1])
            + f"\ntry: curl -s {api}/api/orders -H 'x-api-key: {DEMO_API_KEY}' -H 'content-type: application/json'"
            + """ -d '{"customer": "ann", "sku": "apple", "qty": 2}'"""
            + f" ; curl -s {api}/api/stock/apple"
            + f"\nlive limit: meshkit config put {LIVE_KEY} limit.toml --store {url} --policy"
            + f"  (see who runs what: meshkit config status {LIVE_KEY} --store {url})"
            + "\nmetrics: "
            + ", ".join(f"{c.name} {c.admin}/metrics" for c in children[1:] if c.admin),
            soft_wrap=True,
        )
        stats = RollingStats()
        spread = Spread()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        driver = asyncio.create_task(drive(gateway.address, stats, spread, concurrency, rate, stop, traces))
        if traces is not None:
            console.print(f"traces: every process exports to {otlp} (one call in twenty traced)", soft_wrap=True)
        breakers = Breakers()
        poller = asyncio.create_task(breakers.poll(order.address, stop))
        restock = RestockLeader()
        follower = asyncio.create_task(restock.poll(url, stop))
        started = time.monotonic()
        faulty = children[2]  # inventory-2: inventory-1 is the one --kill-after kills
        note = f'fault switch: meshkit call {faulty.address} inventory.chaos \'{{"mode": "failing"}}\'  (or slow, ok)'
        if fault is not None:
            pending: set[asyncio.Task[None]] = set()

            def fault_event(mode: str) -> None:
                console.print(f"t={time.monotonic() - started:5.1f}s {faulty.name} is now {mode}", soft_wrap=True)
                task = loop.create_task(_chaos(faulty.address, mode))
                pending.add(task)
                task.add_done_callback(pending.discard)

            loop.call_later(fault_after, fault_event, fault)
            loop.call_later(fault_after + fault_for, fault_event, "ok")
        if live_limit is not None:
            limit_tasks: set[asyncio.Task[None]] = set()

            def limit_event() -> None:
                task = loop.create_task(_put_limit(console, url, live_limit, time.monotonic() - started))
                limit_tasks.add(task)
                task.add_done_callback(limit_tasks.discard)

            loop.call_later(live_limit_after, limit_event)
        if kill_after is not None:

            def kill_one() -> None:
                victim = children[1]
                console.print(
                    f"t={time.monotonic() - started:5.1f}s killing {victim.name} (pid {victim.process.pid})",
                    soft_wrap=True,
                )
                victim.process.kill()

            loop.call_later(kill_after, kill_one)
        interactive = console.is_terminal and duration is None
        if interactive:
            # transient: the live view is erased when it ends, so the final panel below is the one
            # left on the screen (a kept last frame and the final panel would show it twice).
            with Live(
                _view(stats, spread, children, started, concurrency, breakers, note, restock),
                console=console,
                refresh_per_second=4,
                transient=True,
            ) as live:
                while not stop.is_set():
                    await asyncio.sleep(0.25)
                    live.update(_view(stats, spread, children, started, concurrency, breakers, note, restock))
        else:
            end = started + (duration if duration is not None else float("inf"))
            while not stop.is_set() and time.monotonic() < end:
                await asyncio.sleep(min(1.0, max(0.0, end - time.monotonic())))
                now = time.monotonic()
                p50, p99 = stats.percentile(now, 0.5), stats.percentile(now, 0.99)
                served = " ".join(f"{k}={v}" for k, v in sorted(spread.last_second(now).items()))
                console.print(
                    f"t={now - started:5.1f}s calls/s={stats.rate(now):7.0f} "
                    f"p50={'-' if p50 is None else f'{p50 * 1000:.2f}ms'} "
                    f"p99={'-' if p99 is None else f'{p99 * 1000:.2f}ms'} "
                    f"ok={stats.total_ok} out_of_stock={stats.total_expected[OUT_OF_STOCK]} "
                    f"errors={dict(stats.total_errors)} served_by: {served}"
                    f" breakers: {breakers.line()} restock_leader={restock.leader or '-'}"
                    + (f" trace: {traces.last}" if traces is not None and traces.last else ""),
                    soft_wrap=True,
                )
            stop.set()
        await driver
        await poller
        await follower
        _print_whole(console, _view(stats, spread, children, started, concurrency, breakers, restock=restock))
        return 0 if stats.total_ok > 0 else 1
    finally:
        _stop(children)
        shutil.rmtree(workdir, ignore_errors=True)
        if provider is not None:
            provider.shutdown()


def _print_whole(console: Console, renderable: RenderableType) -> None:
    """Print ``renderable`` uncut when the output is not a terminal: rich would otherwise lay it
    out in 80 columns and cut every wider cell. $COLUMNS, when set, is the width asked for.
    (The console keeps the wider width: this is the demo's last output.)"""
    if not console.is_terminal and "COLUMNS" not in os.environ:
        needed = Measurement.get(console, console.options.update_width(10_000), renderable).maximum
        console.width = max(console.width, needed)
    console.print(renderable)


def run_demo(
    gateway_port: int | None = None,
    duration: float | None = None,
    concurrency: int = 8,
    rate: float = 200.0,
    kill_after: float | None = None,
    fault: str | None = None,
    fault_after: float = 5.0,
    fault_for: float = 10.0,
    otlp: str | None = None,
    live_limit: float | None = None,
    live_limit_after: float = 5.0,
) -> int:
    """Run the demo; ``gateway_port`` None is DEFAULT_GATEWAY_PORT or, if that is taken, any free
    port; a port given is that port (0: any free one) or an error."""
    errors = Console(stderr=True)
    if gateway_port is not None and not 0 <= gateway_port <= 65535:
        errors.print(f"demo: --gateway-port must be 0-65535 (0: any free port), got {gateway_port}", markup=False)
        return 2
    console = Console()
    try:
        return run_loop(
            _main(
                duration,
                concurrency,
                rate,
                kill_after,
                console,
                fault,
                fault_after,
                fault_for,
                otlp,
                gateway_port,
                live_limit,
                live_limit_after,
            )
        )
    except RuntimeError as exc:  # DemoError, or a process that did not start
        errors.print(str(exc), style="red", markup=False, soft_wrap=True)
        return 1
