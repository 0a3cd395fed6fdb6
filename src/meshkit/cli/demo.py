"""``meshkit demo``: the demo system with a live view (:mod:`meshkit.demo`, imported when it runs)."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``demo`` command's arguments."""
    p = sub.add_parser("demo", help="run the demo system with a live view")
    p.add_argument("--duration", type=float, default=None, help="run N seconds then exit (non-interactive)")
    p.add_argument("--concurrency", type=int, default=8, help="concurrent callers driving the demo (default 8)")
    p.add_argument("--rate", type=float, default=200.0, help="target calls/s (0 = as fast as possible; default 200)")
    p.add_argument("--kill-after", type=float, default=None, help="SIGKILL one inventory after N seconds")
    p.add_argument("--fault", choices=["slow", "failing"], default=None, help="make inventory-2 slow or failing")
    p.add_argument("--fault-after", type=float, default=5.0, help="seconds before the fault starts (default 5)")
    p.add_argument("--fault-for", type=float, default=10.0, help="seconds the fault lasts (default 10)")
    p.add_argument("--otlp", default=None, help="export every process's traces to this OTLP/HTTP endpoint")
    p.add_argument(
        "--live-limit",
        type=float,
        default=None,
        metavar="RATE",
        help="after --live-limit-after seconds, limit inventory.reserve to RATE calls/s per instance, live, "
        "with meshkit config put (the inventories' policy is a key of the registry's store)",
    )
    p.add_argument("--live-limit-after", type=float, default=5.0, help="seconds before --live-limit (default 5)")
    p.add_argument(
        "--gateway-port",
        type=int,
        default=None,
        help="the HTTP entry point's port, an error if taken (0: any free one); default 8080, or a free one if taken",
    )


def run(args: argparse.Namespace) -> int:
    from meshkit.demo.runner import run_demo

    return run_demo(
        gateway_port=args.gateway_port,
        duration=args.duration,
        concurrency=args.concurrency,
        rate=args.rate,
        kill_after=args.kill_after,
        fault=args.fault,
        fault_after=args.fault_after,
        fault_for=args.fault_for,
        otlp=args.otlp,
        live_limit=args.live_limit,
        live_limit_after=args.live_limit_after,
    )
