"""The benchmark's systems: their names, the module that implements each, and what a system
module is given.

A system module has ``serve(system, port, announce)`` (bind HOST, call ``announce(port)`` once
listening, serve until :func:`~meshkit.benchmark.worker.wait_for_stop_signal` returns) and
``load(system, port, concurrency, duration, warmup) -> dict`` (usually
:func:`~meshkit.benchmark.closed_loop.closed_loop` over one connection). It has a module of its own
because the worker, the flags and the harness all read this table, and the system modules read
HOST and AnnounceFn without the rest of the harness.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module

#: The systems in the order they are run and listed (the default run: all but OBSERVED).
ALL_SYSTEMS = (
    "meshkit",
    "meshkit-default",
    "meshkit-metrics",
    "meshkit-traced-0",
    "meshkit-traced-1",
    "meshkit-traced-100",
    "grpc",
    "raw",
)
#: The cost of observability: ``--systems meshkit-default,meshkit-metrics,meshkit-traced-1,...``.
OBSERVED = ("meshkit-metrics", "meshkit-traced-0", "meshkit-traced-1", "meshkit-traced-100")
DEFAULT_SYSTEMS = tuple(s for s in ALL_SYSTEMS if s not in OBSERVED)
BASELINE = "raw"
#: The module that implements each system (imported by name: only the one a process runs).
MODULES = {
    "meshkit": "meshkit.benchmark.systems_meshkit",
    "meshkit-default": "meshkit.benchmark.systems_meshkit",
    "meshkit-metrics": "meshkit.benchmark.systems_meshkit",
    "meshkit-traced-0": "meshkit.benchmark.systems_meshkit",
    "meshkit-traced-1": "meshkit.benchmark.systems_meshkit",
    "meshkit-traced-100": "meshkit.benchmark.systems_meshkit",
    "grpc": "meshkit.benchmark.systems_grpc",
    "raw": "meshkit.benchmark.systems_raw",
}
HOST = "127.0.0.1"

AnnounceFn = Callable[[int], None]


def system_unavailable(system: str) -> str | None:
    """Why ``system`` cannot run here, or None when it can (gRPC is an optional extra)."""
    if system == "grpc":
        try:
            import_module(MODULES[system])
        except ImportError as exc:
            return f"grpc is not importable ({exc}); install it with: pip install 'meshkit[bench]'"
        except RuntimeError as exc:  # the generated stubs refuse an older grpcio
            return f"the gRPC stubs do not load: {exc}"
    if system == "raw":
        try:
            import msgpack  # noqa: F401
        except ImportError as exc:
            return f"msgpack is not importable ({exc}); install it with: pip install 'meshkit[bench]'"
    return None
