"""The child processes' side: ``python -m meshkit.benchmark serve|load ...``.

The harness starts every server and load run as one of these workers (see ``processes``); a worker
pins itself to its cpu, imports the one system module it runs and either serves until SIGTERM or
prints one JSON line of results.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from collections.abc import Sequence
from importlib import import_module

from meshkit.benchmark.argtypes import non_negative_float, positive_float, positive_int
from meshkit.benchmark.systems import ALL_SYSTEMS, MODULES


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
    load.add_argument("--concurrency", type=positive_int, default=1)
    load.add_argument("--duration", type=positive_float, default=5.0)
    load.add_argument("--warmup", type=non_negative_float, default=1.0)
    load.add_argument("--cpu", type=int, default=None, help="pin this process to one cpu")
    args = parser.parse_args(argv)
    _pin(args.cpu)  # before the system's imports start threads (gRPC's inherit the mask)
    module = import_module(MODULES[args.system])
    if args.command == "serve":
        module.serve(args.system, args.port, _announce)
        return 0
    result = module.load(args.system, args.port, args.concurrency, args.duration, args.warmup)
    row = {"system": args.system, "concurrency": args.concurrency, **result}
    print(json.dumps(row), flush=True)
    return 0
