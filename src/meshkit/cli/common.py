"""What the commands of ``meshkit`` share: exit codes, the argparse types for seconds, the one-line
error for a port that cannot be bound, operator lines on stdout, logging set-up, waiting for
SIGINT/SIGTERM and the optional admin HTTP port."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from typing import Any

from meshkit.rpc.server import Server

EXIT_USAGE = 2
EXIT_RPC_ERROR = 1


def _number_of_seconds(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None


def seconds(text: str) -> float:
    """An argparse type: a number of seconds above zero."""
    value = _number_of_seconds(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, got {text}")
    return value


def seconds_or_zero(text: str) -> float:
    """An argparse type: a number of seconds, 0 or more (0 turns the feature off)."""
    value = _number_of_seconds(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 (off) or more seconds, got {text}")
    return value


def cannot_listen(command: str, what: str, host: str, port: int, exc: OSError, flag: str = "--port") -> int:
    """One line for a port that cannot be bound (taken, or not ours to bind), not a traceback."""
    reason = exc.strerror or str(exc)
    print(
        f"meshkit {command}: cannot listen for {what} on {host}:{port}: {reason}; choose another {flag} "
        "(0 picks a free one)",
        file=sys.stderr,
    )
    return EXIT_USAGE


def say(args: argparse.Namespace, text: str) -> None:
    """A line for the operator on stdout: as a JSON object under ``--log-format json``, so that
    the output is one format."""
    if getattr(args, "log_format", "text") == "json":
        print(json.dumps({"level": "INFO", "logger": "meshkit.cli", "message": text}), flush=True)
    else:
        print(text, flush=True)


def setup_logging(level: str, access_log: bool, fmt: str = "text") -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    if fmt == "json":
        from meshkit.observe.logs import install

        for handler in logging.getLogger().handlers:
            install(handler)
    if not access_log:
        logging.getLogger("meshkit.access").setLevel(logging.WARNING)
    # httpx logs every request at INFO, the etcd registry's keepalives included.
    for chatty in ("httpx", "httpcore"):
        logging.getLogger(chatty).setLevel(logging.WARNING)


async def until_stopped() -> None:
    """Return on SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def start_admin(args: argparse.Namespace, server: Server) -> Any:
    """The admin HTTP port (/metrics, /healthz, /readyz) when ``--admin-port`` is given, else None."""
    if args.admin_port is None:
        return None
    from meshkit.observe import AdminHttp
    from meshkit.observe.admin import servers_ready

    http = AdminHttp(ready=servers_ready([server]))
    await http.start(args.host, args.admin_port)
    say(args, f"meshkit: admin on http://{args.host}:{http.port} (/metrics /healthz /readyz)")
    return http
