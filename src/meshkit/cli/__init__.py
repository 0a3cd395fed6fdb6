"""The ``meshkit`` command: run a service, call one, benchmark, and the demo.

This package's ``__init__`` is the entry (``meshkit = "meshkit.cli:main"``, ``python -m meshkit``):
the top-level parser and the dispatch. Each command is a module with its arguments
(``add_parser``) and its ``run``: ``serve`` (``meshkit run``), ``switch``, ``call``, ``registry``,
``gateway``, ``bench``, ``demo``, ``coord`` (``lock``, ``elect``), ``config``; ``common`` and
``tokens`` hold what they share.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from meshkit import __version__
from meshkit.cli import bench, call, config, coord, demo, gateway, registry, serve, switch
from meshkit.cli.common import EXIT_RPC_ERROR, EXIT_USAGE
from meshkit.cli.serve import REGISTRY_SCHEMES
from meshkit.cli.tokens import admin_token_path
from meshkit.cli.tokens import write_admin_token as _write_admin_token  # noqa: F401  (its name before the split)

__all__ = [
    "EXIT_RPC_ERROR",
    "EXIT_USAGE",
    "REGISTRY_SCHEMES",
    "admin_token_path",
    "build_parser",
    "main",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="meshkit", description="meshkit: asyncio microservices with governance built in"
    )
    parser.add_argument("--version", action="version", version=f"meshkit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    # The order --help lists them in.
    for command in (serve, switch, call, registry, gateway, bench, demo, coord, config):
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "bench":
        return bench.run(argv[1:])
    command: list[str] = []
    if argv and argv[0] in ("lock", "elect"):
        argv, command = coord.split_command(argv)
    args = build_parser().parse_args(argv)
    if args.command == "run":
        return serve.run(args)
    if args.command == "call":
        return call.run(args)
    if args.command == "switch":
        return switch.run(args)
    if args.command == "registry":
        return registry.run(args)
    if args.command == "gateway":
        return gateway.run(args)
    if args.command == "demo":
        return demo.run(args)
    if args.command in ("lock", "elect"):
        return coord.run(args, command)
    if args.command == "config":
        return config.run(args)
    return EXIT_USAGE
