"""``python -m meshkit.benchmark [flags]`` runs the harness; ``serve`` and ``load`` are the
sub-commands it runs in its child processes."""

from __future__ import annotations

import sys

from meshkit.benchmark.harness import main
from meshkit.benchmark.worker import worker_main


def _entry(argv: list[str]) -> int:
    if argv and argv[0] in ("serve", "load"):
        return worker_main(argv)
    return main(argv)


if __name__ == "__main__":
    raise SystemExit(_entry(sys.argv[1:]))
