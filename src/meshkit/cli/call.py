"""``meshkit call``: one call (or a server stream) with JSON arguments, the JSON answer printed."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from meshkit.cli.common import EXIT_RPC_ERROR, EXIT_USAGE, seconds
from meshkit.errors import RpcError, StatusCode
from meshkit.rpc.client import Client
from meshkit.transport.loop import run as run_loop


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``call`` command's arguments."""
    p = sub.add_parser("call", help="call a method with JSON arguments and print the JSON result")
    p.add_argument("target", help="HOST:PORT of a server (comma-separated for several)")
    p.add_argument("method", help="SERVICE.METHOD")
    p.add_argument("args", nargs="?", default="{}", help="JSON object of arguments (default {})")
    p.add_argument("--timeout", type=seconds, default=10.0, help="seconds (default 10)")
    p.add_argument("--stream", action="store_true", help="the method is server-streaming: print each message")
    p.add_argument("--metadata", "-m", action="append", help="KEY=VALUE request metadata (repeatable)")


def run(args: argparse.Namespace) -> int:
    return run_loop(_call(args))


async def _call(args: argparse.Namespace) -> int:
    service, sep, method = args.method.rpartition(".")
    if not sep or not service or not method:
        print(f"meshkit call: expected SERVICE.METHOD, got {args.method!r}", file=sys.stderr)
        return EXIT_USAGE
    try:
        payload = json.loads(args.args) if args.args else {}
    except json.JSONDecodeError as exc:
        print(f"meshkit call: arguments are not valid JSON: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not isinstance(payload, dict):
        print("meshkit call: arguments must be a JSON object of parameter names to values", file=sys.stderr)
        return EXIT_USAGE
    metadata: dict[str, Any] = {}
    for item in args.metadata or []:
        key, eq, value = item.partition("=")
        if not eq:
            print(f"meshkit call: --metadata wants KEY=VALUE, got {item!r}", file=sys.stderr)
            return EXIT_USAGE
        metadata[key] = value
    try:
        client = Client(target=args.target, timeout=args.timeout, middleware=[])
        client._check_metadata(metadata)
    except (ValueError, TypeError) as exc:
        print(f"meshkit call: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        if args.stream:
            async for item in client.stream(service, method, payload, metadata=metadata):
                print(json.dumps(item, default=str), flush=True)
        else:
            result = await client.call(service, method, payload, metadata=metadata)
            print(json.dumps(result, indent=2, default=str))
    except RpcError as exc:
        hint = ""
        if exc.code is StatusCode.FAILED_PRECONDITION and "server-streaming method" in exc.message:
            hint = " (add --stream to call a stream)"
        elif exc.code is StatusCode.FAILED_PRECONDITION and "unary method" in exc.message:
            hint = " (it is not a stream: leave out --stream)"
        print(f"error: {exc.code.name}: {exc.message}{hint}", file=sys.stderr)
        return EXIT_RPC_ERROR
    finally:
        await client.close()
    return 0
