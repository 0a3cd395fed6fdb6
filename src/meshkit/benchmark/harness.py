"""The RPC benchmark harness: meshkit against gRPC and a raw asyncio baseline.

Every measurement (one system at one concurrency) runs a fresh server process pinned to one core
and a load process pinned to another, both started as ``python -m meshkit.benchmark ...``:

* ``serve SYSTEM --port 0`` binds 127.0.0.1, prints ``PORT <n>`` and serves until SIGTERM;
* ``load SYSTEM --port P --concurrency C --duration D --warmup W`` runs C closed-loop callers on one
  connection (each calls again as soon as its answer arrives), discards the warmup, measures for D
  seconds and prints one JSON line of results.

The harness collects those lines, adds the ratios against the ``raw`` baseline at the same
concurrency and prints a table (rich on a terminal, plain text otherwise, Markdown on request).

This module is the entry: the flags (:func:`build_parser`) and the run over systems, concurrencies
and rounds (:func:`main`). The parts are modules of their own: ``systems`` (the catalogue),
``worker`` (the ``serve``/``load`` processes), ``closed_loop`` (the measurement), ``processes``
(starting and stopping them), ``machine`` (pinning, machine facts), ``results`` (statistics,
ratios), ``table`` (output) and ``argtypes``. The names this module had before the split are
re-exported from here.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from meshkit.benchmark.argtypes import concurrency_list, non_negative_float, positive_float, positive_int, system_list
from meshkit.benchmark.closed_loop import SERVER_PID_ENV, closed_loop, process_cpu_ns
from meshkit.benchmark.machine import Placement, choose_cpus, cpu_model, header_line, machine_facts
from meshkit.benchmark.processes import (
    LOAD_SLACK,
    SERVER_START_TIMEOUT,
    SERVER_STOP_TIMEOUT,
    BenchmarkError,
    ServerStartError,
    child_env,
    measure,
    run_load,
    start_server,
    stop_server,
)
from meshkit.benchmark.results import ROW_KEYS, add_ratios, median_run, summarize
from meshkit.benchmark.systems import (
    ALL_SYSTEMS,
    BASELINE,
    DEFAULT_SYSTEMS,
    HOST,
    OBSERVED,
    AnnounceFn,
    system_unavailable,
)
from meshkit.benchmark.table import COLUMNS, format_markdown, format_plain, num, print_rich, report, table_cells
from meshkit.benchmark.worker import wait_for_stop_signal, worker_main

__all__ = [
    "ALL_SYSTEMS",
    "BASELINE",
    "COLUMNS",
    "DEFAULT_SYSTEMS",
    "HOST",
    "LOAD_SLACK",
    "OBSERVED",
    "ROW_KEYS",
    "SERVER_PID_ENV",
    "SERVER_START_TIMEOUT",
    "SERVER_STOP_TIMEOUT",
    "AnnounceFn",
    "BenchmarkError",
    "Placement",
    "ServerStartError",
    "add_ratios",
    "build_parser",
    "child_env",
    "choose_cpus",
    "closed_loop",
    "cpu_model",
    "format_markdown",
    "format_plain",
    "header_line",
    "machine_facts",
    "main",
    "measure",
    "median_run",
    "print_rich",
    "process_cpu_ns",
    "report",
    "run_load",
    "start_server",
    "stop_server",
    "summarize",
    "system_unavailable",
    "table_cells",
    "wait_for_stop_signal",
    "worker_main",
]


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
        "--duration", type=positive_float, default=5.0, metavar="SECONDS", help="measured seconds per run (default 5)"
    )
    parser.add_argument(
        "--warmup",
        type=non_negative_float,
        default=1.0,
        metavar="SECONDS",
        help="unmeasured seconds before each run (default 1)",
    )
    parser.add_argument(
        "--concurrency",
        type=concurrency_list,
        default=[1, 64],
        metavar="N,N",
        help="concurrent callers, comma-separated (default 1,64)",
    )
    parser.add_argument(
        "--systems",
        type=system_list,
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
        type=positive_int,
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
                    print(f" {row['calls_per_s']:,.0f} calls/s, p50 {num(row['p50_us'], ',.1f')} µs", file=err)
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
