"""Redis for the tests: the shared one on 6379, a private one to stop and restart, a closed port."""

from __future__ import annotations

import shutil
import socket

import pytest

from meshkit.testing import ChildProcess, spawn

SHARED = "redis://127.0.0.1:6379/0"


def require_redis() -> None:
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=1).close()
    except OSError:
        pytest.fail(
            "Redis is not running on 127.0.0.1:6379; start it with: redis-server --daemonize yes "
            "--bind 127.0.0.1 --port 6379 --save '' --appendonly no"
        )


def closed_port() -> int:
    """A loopback port nothing listens on (bound then released: connecting to it is refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivateRedis:
    """A redis-server of this test alone, on a free port, empty (no keys, no scripts) at start."""

    def __init__(self) -> None:
        if shutil.which("redis-server") is None:
            pytest.fail("redis-server is not installed")
        self.port = closed_port()
        self.proc: ChildProcess | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = spawn(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            name="private redis",
            port=self.port,
            grace=10,
            timeout=10,
        )

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
            self.proc = None
