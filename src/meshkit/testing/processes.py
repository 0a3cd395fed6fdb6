"""Service processes for fault tests: started with ``meshkit run``, signalled by PID (SIGKILL,
SIGSTOP, SIGCONT, SIGTERM), always stopped on the way out.

Each child leads a process group of its own, and signals go to that group: with a ``prefix``
that forks (``sudo``, a wrapper script), the service itself is the grandchild, and signalling
the child's PID alone would freeze or kill the wrapper and leave the service running.

    with service_process("myapp.services:Greeter", registry=url) as svc:
        client = Client(target=svc.address)
        svc.pause()    # SIGSTOP: the socket stays open, nothing answers (only keepalive can tell)
        svc.resume()   # SIGCONT
        svc.kill()     # SIGKILL: no goodbye, calls in flight are lost in the middle
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager


class ServiceProcess:
    def __init__(self, proc: subprocess.Popen[str], address: str) -> None:
        self.proc = proc
        self.address = address

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the child's process group (the child and anything it started)."""
        if self.proc.poll() is None:
            _signal_group(self.proc.pid, sig)

    def kill(self) -> None:
        """SIGKILL: the process dies at once, mid-call."""
        self.signal(signal.SIGKILL)

    def pause(self) -> None:
        """SIGSTOP: frozen; its sockets stay open."""
        self.signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.signal(signal.SIGCONT)

    def terminate(self) -> None:
        """SIGTERM: a graceful stop (meshkit drains calls in flight)."""
        self.signal(signal.SIGTERM)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):  # the group is gone (or its id was reused)
        pass


@contextmanager
def registry_process(
    args: Sequence[str] = (), env: dict[str, str] | None = None, start_timeout: float = 20.0
) -> Iterator[ServiceProcess]:
    """``meshkit registry --port 0`` in a child process; ``.address`` is host:port (clients use
    ``meshkit://`` + address). Killed and reaped on exit, by PID."""
    cmd = [sys.executable, "-m", "meshkit", "registry", "--port", "0", "--log-level", "WARNING", *args]
    with _child(cmd, "meshkit: registry serving", env, None, start_timeout) as child:
        yield child


@contextmanager
def _child(
    cmd: list[str], ready: str, env: dict[str, str] | None, cwd: str | None, start_timeout: float
) -> Iterator[ServiceProcess]:
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, text=True, cwd=cwd, env={**os.environ, **(env or {})}, start_new_session=True
    )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + start_timeout
        address = None
        while (left := deadline - time.monotonic()) > 0:
            # Wait for a line no longer than the start timeout: a child that prints nothing must
            # not hold the caller (readline alone would block until it exits).
            readable, _, _ = select.select([proc.stdout], [], [], left)
            if not readable:
                break
            line = proc.stdout.readline()
            if not line:
                break
            if line.startswith(ready):
                address = line.rsplit(" on ", 1)[1].split()[0].strip()  # "... on HOST:PORT [...]"
                break
        if address is None:
            raise RuntimeError(f"{' '.join(cmd[2:4])} did not start (exit code {proc.poll()})")
        yield ServiceProcess(proc, address)
    finally:
        # The whole group, even when the child itself has exited (a forking prefix's service),
        # but only while the child is not yet reaped: until then its id cannot name another
        # process group. (A test that reaped it with wait() already chose to end it.)
        if proc.returncode is None:
            _signal_group(proc.pid, signal.SIGCONT)
            _signal_group(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


@contextmanager
def service_process(
    *services: str,
    registry: str | None = None,
    args: Sequence[str] = (),
    env: dict[str, str] | None = None,
    cwd: str | None = None,
    start_timeout: float = 20.0,
    prefix: Sequence[str] = (),
) -> Iterator[ServiceProcess]:
    """``meshkit run SERVICES --port 0 [--registry URL] ARGS`` in a child process; yields once it
    serves. ``prefix`` runs it through another command (``NetnsLink.exec_args``: inside a network
    namespace). On exit the process is resumed (if paused) and killed, by PID, and reaped."""
    cmd = [
        *prefix,
        sys.executable,
        "-m",
        "meshkit",
        "run",
        *services,
        "--port",
        "0",
        "--no-access-log",
        "--no-admin-service",
    ]
    if registry is not None:
        cmd += ["--registry", registry]
    cmd += list(args)
    with _child(cmd, "meshkit: serving", env, cwd, start_timeout) as child:
        yield child
