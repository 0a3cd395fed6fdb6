"""Run meshkit servers in child processes for tests; stopped by PID, always."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class ServerProcess:
    def __init__(self, proc: subprocess.Popen[str], address: str) -> None:
        self.proc = proc
        self.address = address

    @property
    def pid(self) -> int:
        return self.proc.pid

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)


@contextmanager
def server_process(*services: str, env: dict[str, str] | None = None, grace: float = 5.0) -> Iterator[ServerProcess]:
    cmd = [sys.executable, "-m", "meshkit", "run", *services, "--port", "0", "--grace", str(grace), "--no-access-log"]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
    )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 20
        address = None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            if line.startswith("meshkit: serving"):
                address = line.rsplit(" on ", 1)[1].strip()
                break
        if address is None:
            raise RuntimeError(f"server process did not start; exit code {proc.poll()}")
        yield ServerProcess(proc, address)
    finally:
        if proc.poll() is None:
            try:
                os.kill(proc.pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
            proc.kill()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
