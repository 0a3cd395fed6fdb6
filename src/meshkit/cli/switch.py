"""``meshkit switch``: show or flip the runtime switches of running processes through their
meshkit-admin service."""

from __future__ import annotations

import argparse
import json
import os
import sys

from meshkit.cli.common import EXIT_RPC_ERROR, EXIT_USAGE, seconds
from meshkit.cli.tokens import local_token
from meshkit.errors import RpcError
from meshkit.rpc.client import Client, parse_target
from meshkit.transport.loop import run as run_loop


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``switch`` command's arguments."""
    p = sub.add_parser("switch", help="turn a method of running processes into its fallback (or back), live")
    p.add_argument("name", nargs="?", help="SERVICE.METHOD (omit, with the state, to show switches and breakers)")
    p.add_argument("state", nargs="?", choices=["on", "off"], help="on: answer with the fallback; off: normal")
    p.add_argument("--target", required=True, help="HOST:PORT of the process(es), comma-separated")
    p.add_argument("--timeout", type=seconds, default=5.0, help="seconds (default 5)")
    p.add_argument(
        "--token",
        default=None,
        help="the admin token (default $MESHKIT_ADMIN_TOKEN, else the file meshkit run left for a local process)",
    )


def run(args: argparse.Namespace) -> int:
    return run_loop(_switch(args))


async def _switch(args: argparse.Namespace) -> int:
    if (args.name is None) != (args.state is None):
        print("meshkit switch: give SERVICE.METHOD and on|off, or neither to show the state", file=sys.stderr)
        return EXIT_USAGE
    try:
        targets = [f"{h}:{p}" for h, p in parse_target(args.target)]
    except ValueError as exc:
        print(f"meshkit switch: {exc}", file=sys.stderr)
        return EXIT_USAGE
    status = 0
    for target in targets:
        token = args.token or os.environ.get("MESHKIT_ADMIN_TOKEN") or local_token(target)
        metadata = {"authorization": f"Bearer {token}"} if token else None
        client = Client(target=target, timeout=args.timeout, middleware=[], metadata=metadata)
        try:
            if args.name is None:
                answer = await client.call("meshkit-admin", "status")
            else:
                answer = await client.call("meshkit-admin", "switch", {"name": args.name, "on": args.state == "on"})
                if not answer.get("served_here"):
                    answer["note"] = f"{target} does not serve {args.name}; its clients still honour the switch"
                elif not answer.get("has_fallback") and args.state == "on":
                    answer["note"] = f"{args.name} has no fallback: it is refused with UNAVAILABLE while on"
            print(json.dumps({target: answer}, indent=2, default=str))
        except RpcError as exc:
            print(f"{target}: error: {exc.code.name}: {exc.message}", file=sys.stderr)
            status = EXIT_RPC_ERROR
        finally:
            await client.close()
    return status
