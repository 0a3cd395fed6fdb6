"""Echo RPC benchmark: ``python bench/rpc.py [--duration 5] [--concurrency 1,64] [--systems ...]``.

A thin wrapper around :func:`meshkit.benchmark.harness.main`; ``--help`` lists the flags.
"""

from __future__ import annotations

import sys

from meshkit.benchmark.harness import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], prog="python bench/rpc.py"))
