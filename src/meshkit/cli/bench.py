"""``meshkit bench``: the RPC benchmark. Its flags are the harness's own (``meshkit bench --help``
is the harness's help), so here the command is only named; :func:`run` hands the rest of the
command line to :func:`meshkit.benchmark.harness.main`, imported when the command runs."""

from __future__ import annotations

import argparse
from collections.abc import Sequence


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Only the name and its help line: ``main`` passes ``bench ...`` on before parsing."""
    sub.add_parser("bench", help="benchmark meshkit against gRPC and a raw asyncio echo", add_help=False)


def run(argv: Sequence[str]) -> int:
    """``meshkit bench ARGS``: the benchmark harness with ARGS."""
    from meshkit.benchmark.harness import main as bench_main

    return bench_main(list(argv))
