"""The harness's child processes: a fresh ``serve`` worker per measurement (started and stopped
with :mod:`meshkit.testing.spawn`), one ``load`` run against it, and the errors when either fails.

One measurement is :func:`measure`; the harness calls it once per system, concurrency and round.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from meshkit.benchmark.closed_loop import SERVER_PID_ENV
from meshkit.benchmark.machine import Placement
from meshkit.testing.spawn import ChildNotReady, ChildProcess, spawn

#: A server that has not printed its port by then counts as failed to start.
SERVER_START_TIMEOUT = 10.0
#: After SIGTERM a server gets this long to exit before it is killed.
SERVER_STOP_TIMEOUT = 5.0
#: The load process may run this much longer than warmup + duration before it is killed.
LOAD_SLACK = 60.0


class BenchmarkError(Exception):
    """A measurement could not be made."""


class ServerStartError(BenchmarkError):
    """A server process did not report its port in time."""


def child_env() -> dict[str, str]:
    """The environment of the child processes: this meshkit first on the path, unbuffered output."""
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _cpu_args(cpu: int | None) -> list[str]:
    return [] if cpu is None else ["--cpu", str(cpu)]


#: What a ``serve`` process prints once it listens.
_PORT_LINE = re.compile(r"^PORT (\d+)$")


def start_server(system: str, cpu: int | None, env: dict[str, str]) -> tuple[ChildProcess, int]:
    """A fresh ``serve`` child and the port it listens on; ServerStartError (with the child's
    last output lines) if it does not print its port within SERVER_START_TIMEOUT seconds. Not in a
    session of its own: Ctrl-C in the terminal reaches it too. Its stderr is kept for that error."""
    cmd = [sys.executable, "-m", "meshkit.benchmark", "serve", system, "--port", "0", *_cpu_args(cpu)]
    try:
        server = spawn(
            cmd,
            name=f"the {system} server",
            env=env,
            stderr="capture",
            new_session=False,
            grace=SERVER_STOP_TIMEOUT,
            ready=_PORT_LINE,
            timeout=SERVER_START_TIMEOUT,
        )
    except ChildNotReady as exc:
        raise ServerStartError(str(exc)) from None
    assert server.ready_match is not None
    return server, int(server.ready_match[1])


def stop_server(server: ChildProcess) -> None:
    """SIGTERM, then SIGKILL if it is still there after SERVER_STOP_TIMEOUT seconds."""
    server.stop()
    if server.escalated:
        print(f"warning: {server.name} pid {server.pid} ignored SIGTERM; killed it", file=sys.stderr)


def run_load(
    system: str, port: int, concurrency: int, duration: float, warmup: float, cpu: int | None, env: dict[str, str]
) -> dict[str, Any]:
    cmd = [
        sys.executable,
        "-m",
        "meshkit.benchmark",
        "load",
        system,
        "--port",
        str(port),
        "--concurrency",
        str(concurrency),
        "--duration",
        repr(duration),
        "--warmup",
        repr(warmup),
        *_cpu_args(cpu),
    ]
    timeout = warmup + duration + LOAD_SLACK
    try:
        done = subprocess.run(
            cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout, env=env, check=False
        )
    except subprocess.TimeoutExpired:
        raise BenchmarkError(f"the {system} client did not finish within {timeout:g} s") from None
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = done.stderr.strip()[-2000:]
        raise BenchmarkError(
            f"the {system} client exited with code {done.returncode} and no result"
            + (f"; its stderr:\n{tail}" if tail else "")
        )
    result: dict[str, Any] = json.loads(lines[-1])
    if done.stderr.strip():
        print(done.stderr.rstrip(), file=sys.stderr)
    return result


def measure(
    system: str, concurrency: int, duration: float, warmup: float, placement: Placement, env: dict[str, str]
) -> dict[str, Any]:
    """One row: a fresh server, one load run against it, the server stopped by PID."""
    server, port = start_server(system, placement.server_cpu, env)
    try:
        env = {**env, SERVER_PID_ENV: str(server.pid)}
        return run_load(system, port, concurrency, duration, warmup, placement.client_cpu, env)
    finally:
        stop_server(server)
