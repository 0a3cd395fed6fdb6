"""Run meshkit servers in child processes for tests; stopped by PID, always (meshkit.testing's
``service_process``, with this checkout on the path)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from meshkit.testing import ServiceProcess, service_process
from tests.helpers import CHILD_PYTHONPATH

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def server_process(*services: str, env: dict[str, str] | None = None, grace: float = 5.0) -> Iterator[ServiceProcess]:
    with service_process(
        *services, args=["--grace", str(grace)], env={"PYTHONPATH": CHILD_PYTHONPATH, **(env or {})}, cwd=str(ROOT)
    ) as srv:
        yield srv
