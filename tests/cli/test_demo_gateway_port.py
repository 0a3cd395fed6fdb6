"""The demo's gateway port: the default one falls back to a free port when taken and says so; a
port asked for is that port or a one-line error, never a traceback."""

from __future__ import annotations

import io
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from meshkit.demo import runner

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port another process listens on, for as long as the test runs."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def _free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_a_taken_default_port_is_replaced_by_a_free_one_in_one_line(
    taken_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runner, "DEFAULT_GATEWAY_PORT", taken_port)
    out = io.StringIO()
    port = runner.pick_gateway_port(None, Console(file=out, width=200))
    assert port not in (0, taken_port) and _free(port)
    assert out.getvalue() == f"demo: port {taken_port} is taken; the gateway uses port {port} instead\n"


def test_a_free_default_port_is_used_silently(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        free = sock.getsockname()[1]
    monkeypatch.setattr(runner, "DEFAULT_GATEWAY_PORT", free)
    out = io.StringIO()
    assert runner.pick_gateway_port(None, Console(file=out)) == free
    assert runner.pick_gateway_port(0, Console(file=out)) == 0  # any free one: the gateway picks it
    assert out.getvalue() == ""


def test_a_taken_port_asked_for_is_an_error_naming_it(taken_port: int) -> None:
    with pytest.raises(runner.DemoError, match=rf"127\.0\.0\.1:{taken_port}: Address already in use"):
        runner.pick_gateway_port(taken_port, Console(file=io.StringIO()))


@pytest.mark.parametrize("port", ["taken", "70000"])
def test_the_demo_refuses_a_port_it_cannot_have_in_one_line(port: str, taken_port: int) -> None:
    asked = str(taken_port) if port == "taken" else port
    proc = subprocess.run(
        [sys.executable, "-m", "meshkit", "demo", "--duration", "1", "--gateway-port", asked],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert proc.returncode in (1, 2), proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert proc.stdout == ""  # no process was started: nothing to show
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and re.match(rf"demo: .*{asked}", lines[0]), proc.stderr
