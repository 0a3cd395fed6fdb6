"""The RPC benchmark harness: meshkit against gRPC and a raw asyncio baseline.

Every measurement (one system at one concurrency) runs a fresh server process pinned to one core
and a load process pinned to another, both started as ``python -m meshkit.benchmark ...``:

* ``serve SYSTEM --port 0`` binds 127.0.0.1, prints ``PORT <n>`` and serves until SIGTERM;
* ``load SYSTEM --port P --concurrency C --duration D --warmup W`` runs C closed-loop callers on one
  connection (each calls again as soon as its answer arrives), discards the warmup, measures for D
  seconds and prints one JSON line of results.

The harness collects those lines, adds the ratios against the ``raw`` baseline at the same
concurrency and prints a table (rich on a terminal, plain text otherwise, Markdown on request).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import time
from array import array
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from typing import Any

from meshkit.testing.spawn import ChildNotReady, ChildProcess, spawn

#: The systems in the order they are run and listed (the default run: all but OBSERVED).
ALL_SYSTEMS = (
    "meshkit",
    "meshkit-default",
    "meshkit-metrics",
    "meshkit-traced-0",
    "meshkit-traced-1",
    "meshkit-traced-100",
    "grpc",
    "raw",
)
#: The cost of observability: ``--systems meshkit-default,meshkit-metrics,meshkit-traced-1,...``.
OBSERVED = ("meshkit-metrics", "meshkit-traced-0", "meshkit-traced-1", "meshkit-traced-100")
DEFAULT_SYSTEMS = tuple(s for s in ALL_SYSTEMS if s not in OBSERVED)
BASELINE = "raw"
_MODULES = {
    "meshkit": "meshkit.benchmark.systems_meshkit",
    "meshkit-default": "meshkit.benchmark.systems_meshkit",
    "meshkit-metrics": "meshkit.benchmark.systems_meshkit",
    "meshkit-traced-0": "meshkit.benchmark.systems_meshkit",
    "meshkit-traced-1": "meshkit.benchmark.systems_meshkit",
    "meshkit-traced-100": "meshkit.benchmark.systems_meshkit",
    "grpc": "meshkit.benchmark.systems_grpc",
    "raw": "meshkit.benchmark.systems_raw",
}
HOST = "127.0.0.1"
#: A server that has not printed its port by then counts as failed to start.
SERVER_START_TIMEOUT = 10.0
#: After SIGTERM a server gets this long to exit before it is killed.
SERVER_STOP_TIMEOUT = 5.0
#: The load process may run this much longer than warmup + duration before it is killed.
LOAD_SLACK = 60.0
#: The keys every result row has (the JSON output has a few more per row).
ROW_KEYS = (
    "system",
    "concurrency",
    "calls",
    "elapsed_s",
    "calls_per_s",
    "p50_us",
    "p99_us",
    "calls_per_s_vs_raw",
    "p50_vs_raw",
)

AnnounceFn = Callable[[int], None]


# ---------------------------------------------------------------------------------------------
# Measurement: runs inside the load process
# ---------------------------------------------------------------------------------------------
_WARMUP, _MEASURE, _STOP = 0, 1, 2


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


#: The load process finds the server process's pid here, to read its CPU time (Linux /proc).
SERVER_PID_ENV = "MESHKIT_BENCH_SERVER_PID"
_TICK_NS = 1_000_000_000 // (os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100)


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


def summarize(latencies_ns: Sequence[int], elapsed_ns: int) -> dict[str, Any]:
    """Throughput and latency percentiles (nearest rank, in microseconds) of one run."""
    n = len(latencies_ns)
    ordered = sorted(latencies_ns)

    def pct(q: float) -> float | None:
        if not n:
            return None
        return round(ordered[min(n - 1, max(0, math.ceil(q * n) - 1))] / 1000, 1)

    return {
        "calls": n,
        "elapsed_s": round(elapsed_ns / 1e9, 4),
        "calls_per_s": round(n * 1e9 / elapsed_ns, 1) if elapsed_ns else 0.0,
        "mean_us": round(sum(ordered) / n / 1000, 1) if n else None,
        "p50_us": pct(0.50),
        "p90_us": pct(0.90),
        "p99_us": pct(0.99),
        "p999_us": pct(0.999),
        "max_us": round(ordered[-1] / 1000, 1) if n else None,
    }


async def wait_for_stop_signal() -> None:
    """Return on SIGTERM or SIGINT: how a ``serve`` process learns to shut down."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError, ValueError):
            pass
    await stop.wait()


# ---------------------------------------------------------------------------------------------
# Child processes: ``serve`` and ``load``
# ---------------------------------------------------------------------------------------------
def _pin(cpu: int | None) -> None:
    if cpu is None:
        return
    try:
        os.sched_setaffinity(0, {cpu})
    except (AttributeError, OSError) as exc:
        print(f"warning: could not pin process {os.getpid()} to cpu {cpu}: {exc}", file=sys.stderr)


def _announce(port: int) -> None:
    print(f"PORT {port}", flush=True)


def worker_main(argv: Sequence[str]) -> int:
    """``serve`` / ``load`` sub-commands; the harness runs them in child processes."""
    parser = argparse.ArgumentParser(prog="python -m meshkit.benchmark", description="benchmark worker processes")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve SYSTEM; print 'PORT <n>' once listening, stop on SIGTERM")
    serve.add_argument("system", choices=ALL_SYSTEMS)
    serve.add_argument("--port", type=int, default=0)
    serve.add_argument("--cpu", type=int, default=None, help="pin this process to one cpu")
    load = sub.add_parser("load", help="run the closed-loop client; print one JSON line of results")
    load.add_argument("system", choices=ALL_SYSTEMS)
    load.add_argument("--port", type=int, required=True)
    load.add_argument("--concurrency", type=_positive_int, default=1)
    load.add_argument("--duration", type=_positive_float, default=5.0)
    load.add_argument("--warmup", type=_non_negative_float, default=1.0)
    load.add_argument("--cpu", type=int, default=None, help="pin this process to one cpu")
    args = parser.parse_args(argv)
    _pin(args.cpu)  # before the system's imports start threads (gRPC's inherit the mask)
    module = import_module(_MODULES[args.system])
    if args.command == "serve":
        module.serve(args.system, args.port, _announce)
        return 0
    result = module.load(args.system, args.port, args.concurrency, args.duration, args.warmup)
    row = {"system": args.system, "concurrency": args.concurrency, **result}
    print(json.dumps(row), flush=True)
    return 0


# ---------------------------------------------------------------------------------------------
# The harness: runs in the parent
# ---------------------------------------------------------------------------------------------
class BenchmarkError(Exception):
    """A measurement could not be made."""


class ServerStartError(BenchmarkError):
    """A server process did not report its port in time."""


@dataclass(frozen=True)
class Placement:
    server_cpu: int | None
    client_cpu: int | None
    note: str

    @property
    def pinned(self) -> bool:
        return self.server_cpu is not None


def _siblings(cpu: int) -> set[int]:
    """Hardware threads sharing ``cpu``'s core (itself included), from sysfs when it is there."""
    path = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list")
    try:
        text = path.read_text().strip()
    except OSError:
        return {cpu}
    out: set[int] = set()
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        if lo.isdigit():
            out.update(range(int(lo), int(hi or lo) + 1))
    return out or {cpu}


def choose_cpus(pin: bool = True) -> Placement:
    """Server on the first usable cpu, client on the next one that is not its SMT sibling."""
    if not pin:
        return Placement(None, None, "no (--no-pin)")
    try:
        allowed = sorted(os.sched_getaffinity(0))
    except AttributeError:
        return Placement(None, None, "no (this platform has no os.sched_setaffinity)")
    if len(allowed) < 2:
        return Placement(None, None, "no (1 usable core: server and client share it)")
    server = allowed[0]
    siblings = _siblings(server)
    client = next((c for c in allowed[1:] if c not in siblings), allowed[1])
    note = f"yes (server cpu{server}, client cpu{client}"
    note += ", SMT siblings)" if client in siblings else ")"
    return Placement(server, client, note)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, sep, value = line.partition(":")
                if sep and key.strip() in ("model name", "Hardware", "Processor", "cpu model"):
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _dist_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def machine_facts(placement: Placement) -> dict[str, Any]:
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 1
    return {
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "python": f"{platform.python_version()} ({platform.python_implementation()})",
        "uvloop": _dist_version("uvloop"),
        "grpcio": _dist_version("grpcio"),
        "msgspec": _dist_version("msgspec"),
        "msgpack": _dist_version("msgpack"),
        "platform": platform.platform(),
        "pinned": placement.pinned,
        "pinning": placement.note,
    }


def header_line(facts: dict[str, Any]) -> str:
    cores = f"{facts['cores']}"
    if facts["usable_cores"] != facts["cores"]:
        cores += f" ({facts['usable_cores']} usable)"
    uvloop = facts["uvloop"] or "not installed (asyncio loop)"
    return (
        f"CPU: {facts['cpu_model']} | cores: {cores} | Python {facts['python']} | uvloop {uvloop} | "
        f"pinned: {facts['pinning']}"
    )


def system_unavailable(system: str) -> str | None:
    """Why ``system`` cannot run here, or None when it can (gRPC is an optional extra)."""
    if system == "grpc":
        try:
            import_module(_MODULES[system])
        except ImportError as exc:
            return f"grpc is not importable ({exc}); install it with: pip install 'meshkit[bench]'"
        except RuntimeError as exc:  # the generated stubs refuse an older grpcio
            return f"the gRPC stubs do not load: {exc}"
    if system == "raw":
        try:
            import msgpack  # noqa: F401
        except ImportError as exc:
            return f"msgpack is not importable ({exc}); install it with: pip install 'meshkit[bench]'"
    return None


def child_env() -> dict[str, str]:
    """The environment of the child processes: this meshkit first on the path, unbuffered output."""
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _cpu_args(cpu: int | None) -> list[str]:
    return [] if cpu is None else ["--cpu", str(cpu)]


#: What a ``serve`` process prints once it listens.
_PORT_LINE = re.compile(r"^PORT (\d+)$")


def start_server(system: str, cpu: int | None, env: dict[str, str]) -> tuple[ChildProcess, int]:
    """A fresh ``serve`` child and the port it listens on; ServerStartError (with the child's
    last output lines) if it does not print its port within SERVER_START_TIMEOUT seconds. Not in a
    session of its own: Ctrl-C in the terminal reaches it too. Its stderr is kept for that error."""
    cmd = [sys.executable, "-m", "meshkit.benchmark", "serve", system, "--port", "0", *_cpu_args(cpu)]
    try:
        server = spawn(
            cmd,
            name=f"the {system} server",
            env=env,
            stderr="capture",
            new_session=False,
            grace=SERVER_STOP_TIMEOUT,
            ready=_PORT_LINE,
            timeout=SERVER_START_TIMEOUT,
        )
    except ChildNotReady as exc:
        raise ServerStartError(str(exc)) from None
    assert server.ready_match is not None
    return server, int(server.ready_match[1])


def stop_server(server: ChildProcess) -> None:
    """SIGTERM, then SIGKILL if it is still there after SERVER_STOP_TIMEOUT seconds."""
    server.stop()
    if server.escalated:
        print(f"warning: {server.name} pid {server.pid} ignored SIGTERM; killed it", file=sys.stderr)


def run_load(
    system: str, port: int, concurrency: int, duration: float, warmup: float, cpu: int | None, env: dict[str, str]
) -> dict[str, Any]:
    cmd = [
        sys.executable,
        "-m",
        "meshkit.benchmark",
        "load",
        system,
        "--port",
        str(port),
        "--concurrency",
        str(concurrency),
        "--duration",
        repr(duration),
        "--warmup",
        repr(warmup),
        *_cpu_args(cpu),
    ]
    timeout = warmup + duration + LOAD_SLACK
    try:
        done = subprocess.run(
            cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout, env=env, check=False
        )
    except subprocess.TimeoutExpired:
        raise BenchmarkError(f"the {system} client did not finish within {timeout:g} s") from None
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = done.stderr.strip()[-2000:]
        raise BenchmarkError(
            f"the {system} client exited with code {done.returncode} and no result"
            + (f"; its stderr:\n{tail}" if tail else "")
        )
    result: dict[str, Any] = json.loads(lines[-1])
    if done.stderr.strip():
        print(done.stderr.rstrip(), file=sys.stderr)
    return result


def measure(
    system: str, concurrency: int, duration: float, warmup: float, placement: Placement, env: dict[str, str]
) -> dict[str, Any]:
    """One row: a fresh server, one load run against it, the server stopped by PID."""
    server, port = start_server(system, placement.server_cpu, env)
    try:
        env = {**env, SERVER_PID_ENV: str(server.pid)}
        return run_load(system, port, concurrency, duration, warmup, placement.client_cpu, env)
    finally:
        stop_server(server)


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Of repeated runs of one system at one concurrency, the one with the median calls/s (the
    lower middle one for an even count), annotated with how many runs there were and their rates."""
    ordered = sorted(runs, key=lambda r: r["calls_per_s"])
    row = dict(ordered[(len(ordered) - 1) // 2])
    row["runs"] = len(runs)
    row["calls_per_s_runs"] = [r["calls_per_s"] for r in runs]
    for side in ("client", "server"):
        values = [r.get(f"{side}_cpu_us_per_call") for r in runs]
        if all(v is not None for v in values):
            row[f"{side}_cpu_us_per_call_runs"] = values
            row[f"{side}_cpu_us_per_call_median"] = statistics.median(values)  # type: ignore[type-var]
    return row


def add_ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """calls/s and p50 of each row relative to the raw baseline at the same concurrency."""
    base = {r["concurrency"]: r for r in rows if r["system"] == BASELINE}
    for row in rows:
        ref = base.get(row["concurrency"])
        cps_ratio = p50_ratio = None
        if ref is not None:
            if ref.get("calls_per_s"):
                cps_ratio = round(row["calls_per_s"] / ref["calls_per_s"], 3)
            if ref.get("p50_us") and row.get("p50_us") is not None:
                p50_ratio = round(row["p50_us"] / ref["p50_us"], 3)
        row["calls_per_s_vs_raw"] = cps_ratio
        row["p50_vs_raw"] = p50_ratio
    return rows


# -- output ------------------------------------------------------------------------------------
COLUMNS = ("system", "concurrency", "calls/s", "p50 µs", "p99 µs", "calls/s vs raw", "p50 vs raw")


def _num(value: float | None, fmt: str) -> str:
    return "—" if value is None else format(value, fmt)


def _ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}x"


def table_cells(rows: list[dict[str, Any]]) -> list[list[str]]:
    return [
        [
            r["system"],
            str(r["concurrency"]),
            _num(r["calls_per_s"], ",.0f"),
            _num(r["p50_us"], ",.1f"),
            _num(r["p99_us"], ",.1f"),
            _ratio(r["calls_per_s_vs_raw"]),
            _ratio(r["p50_vs_raw"]),
        ]
        for r in rows
    ]


def format_plain(rows: list[dict[str, Any]]) -> str:
    cells = table_cells(rows)
    widths = [max(len(c[i]) for c in [list(COLUMNS), *cells]) for i in range(len(COLUMNS))]
    left = {0}

    def line(cols: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(cols, widths, strict=True))
        )

    out = [line(COLUMNS), "  ".join("-" * w for w in widths)]
    out.extend(line(c) for c in cells)
    return "\n".join(out)


def format_markdown(rows: list[dict[str, Any]]) -> str:
    out = ["| " + " | ".join(COLUMNS) + " |", "|:---|" + "---:|" * (len(COLUMNS) - 1)]
    out.extend("| " + " | ".join(c) + " |" for c in table_cells(rows))
    return "\n".join(out)


def print_rich(rows: list[dict[str, Any]], header: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table()
    for i, name in enumerate(COLUMNS):
        table.add_column(name, justify="left" if i == 0 else "right")
    previous = None
    for row, cells in zip(rows, table_cells(rows), strict=True):
        if previous is not None and row["concurrency"] != previous:
            table.add_section()
        previous = row["concurrency"]
        table.add_row(*cells, style="dim" if row["system"] == BASELINE else None)
    console = Console()
    console.print(header, highlight=False, soft_wrap=True)
    console.print(table)


def report(rows: list[dict[str, Any]], header: str, markdown: bool) -> None:
    if markdown:
        print(header)
        print()
        print(format_markdown(rows))
    elif sys.stdout.isatty():
        print_rich(rows, header)
    else:
        print(header)
        print(format_plain(rows))


# -- CLI ---------------------------------------------------------------------------------------
def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value >= 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _concurrency_list(text: str) -> list[int]:
    values = [_positive_int(part.strip()) for part in text.split(",") if part.strip()]
    if not values:
        raise argparse.ArgumentTypeError("give at least one concurrency, e.g. 1,64")
    return list(dict.fromkeys(values))


def _system_list(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [n for n in names if n not in ALL_SYSTEMS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown system(s) {', '.join(unknown)}; choose from {','.join(ALL_SYSTEMS)}")
    if not names:
        raise argparse.ArgumentTypeError("give at least one system")
    return [s for s in ALL_SYSTEMS if s in names]


def build_parser(prog: str = "meshkit bench") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description=(
            "Echo RPC benchmark: meshkit (bare and with default middleware), gRPC and a raw msgpack-over-asyncio "
            "baseline. Each measurement runs a fresh server and a closed-loop client in two processes pinned to "
            "different cores."
        ),
    )
    parser.add_argument(
        "--duration", type=_positive_float, default=5.0, metavar="SECONDS", help="measured seconds per run (default 5)"
    )
    parser.add_argument(
        "--warmup",
        type=_non_negative_float,
        default=1.0,
        metavar="SECONDS",
        help="unmeasured seconds before each run (default 1)",
    )
    parser.add_argument(
        "--concurrency",
        type=_concurrency_list,
        default=[1, 64],
        metavar="N,N",
        help="concurrent callers, comma-separated (default 1,64)",
    )
    parser.add_argument(
        "--systems",
        type=_system_list,
        default=list(DEFAULT_SYSTEMS),
        metavar="NAME,NAME",
        help=(
            f"systems to run, comma-separated (default {','.join(DEFAULT_SYSTEMS)}; "
            f"the cost of observability, on request: {', '.join(s for s in ALL_SYSTEMS if s not in DEFAULT_SYSTEMS)})"
        ),
    )
    parser.add_argument(
        "--json", type=Path, default=None, metavar="PATH", help="also write the results to PATH as JSON"
    )
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    parser.add_argument(
        "--repeat",
        type=_positive_int,
        default=1,
        metavar="N",
        help="run every measurement N times, interleaved, and report the median run by calls/s (default 1)",
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin server and client to cores")
    return parser


def main(argv: list[str] | None = None, prog: str = "meshkit bench") -> int:
    """Run the benchmark; 0 on success, 1 if a measurement failed (2 for bad arguments).
    ``prog`` is the command the help and usage errors name."""
    args = build_parser(prog).parse_args(argv)
    err = sys.stderr
    systems: list[str] = []
    skipped: dict[str, str] = {}
    for system in args.systems:
        why = system_unavailable(system)
        if why is None:
            systems.append(system)
        else:
            skipped[system] = why
            print(f"skipping {system}: {why}", file=err)
    if not systems:
        print("error: none of the selected systems can run here", file=err)
        return 1

    placement = choose_cpus(pin=not args.no_pin)
    facts = machine_facts(placement)
    header = header_line(facts)
    print(header, file=err)
    if not placement.pinned:
        print(f"note: server and client are not pinned to cores: {placement.note}", file=err)
    env = child_env()

    rows: list[dict[str, Any]] = []
    failures: list[str] = []
    fatal: str | None = None
    total = len(systems) * len(args.concurrency) * args.repeat
    step = 0
    try:
        for concurrency in args.concurrency:
            runs: dict[str, list[dict[str, Any]]] = {system: [] for system in systems}
            for round_no in range(args.repeat):  # rounds interleave the systems, so drift hits all alike
                for system in systems:
                    step += 1
                    label = f"{system} at concurrency {concurrency}"
                    if args.repeat > 1:
                        label += f", run {round_no + 1}/{args.repeat}"
                    print(f"[{step}/{total}] {label} ...", end="", file=err, flush=True)
                    try:
                        row = measure(system, concurrency, args.duration, args.warmup, placement, env)
                    except ServerStartError as exc:
                        print(" failed", file=err)
                        fatal = str(exc)
                        raise
                    except BenchmarkError as exc:
                        print(" failed", file=err)
                        failures.append(str(exc))
                        print(f"error: {exc}", file=err)
                        continue
                    print(f" {row['calls_per_s']:,.0f} calls/s, p50 {_num(row['p50_us'], ',.1f')} µs", file=err)
                    runs[system].append(row)
            rows.extend(median_run(r) for r in runs.values() if r)
    except ServerStartError:
        pass
    except KeyboardInterrupt:
        print("\ninterrupted", file=err)
        return 130

    add_ratios(rows)
    if rows:
        report(rows, header, args.markdown)
    for system, why in skipped.items():
        print(f"(skipped {system}: {why})")
    if args.json is not None:
        payload = {
            "machine": facts,
            "config": {
                "duration_s": args.duration,
                "warmup_s": args.warmup,
                "concurrency": args.concurrency,
                "systems": args.systems,
                "repeat": args.repeat,
                "host": HOST,
            },
            "skipped": skipped,
            "failures": failures + ([fatal] if fatal else []),
            "results": rows,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    if fatal is not None:
        print(f"error: {fatal}", file=err)
        return 1
    if failures:
        print(f"error: {len(failures)} measurement(s) failed (see above)", file=err)
        return 1
    return 0
