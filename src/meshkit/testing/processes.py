"""Service processes for fault tests: started with ``meshkit run``, signalled by PID (SIGKILL,
SIGSTOP, SIGCONT, SIGTERM), always stopped on the way out (``meshkit.testing.spawn`` does the
starting, waiting and stopping).

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

import re
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from meshkit.testing.spawn import ChildProcess

#: "meshkit: serving NAMES on HOST:PORT" / "meshkit: registry serving on HOST:PORT (clients: ...)".
_SERVING = re.compile(r"^meshkit: (?:registry )?serving (?:.* )?on (\S+)")


class ServiceProcess(ChildProcess):
    """A ``meshkit run`` or ``meshkit registry`` child; ``address`` is the host:port it serves on."""

    @property
    def address(self) -> str:
        assert self.ready_match is not None, "not ready yet"
        return self.ready_match[1]


@contextmanager
def _child(
    name: str, cmd: list[str], env: dict[str, str] | None, cwd: str | None, start_timeout: float
) -> Iterator[ServiceProcess]:
    # grace=0: on the way out it is killed (SIGCONT first, should it be paused), not drained.
    with ServiceProcess(cmd, name=name, env=env, cwd=cwd, grace=0) as child:
        child.wait_ready(_SERVING, timeout=start_timeout)
        yield child


@contextmanager
def registry_process(
    args: Sequence[str] = (), env: dict[str, str] | None = None, start_timeout: float = 20.0
) -> Iterator[ServiceProcess]:
    """``meshkit registry --port 0`` in a child process; ``.address`` is host:port (clients use
    ``meshkit://`` + address). Killed and reaped on exit, by PID."""
    cmd = [sys.executable, "-m", "meshkit", "registry", "--port", "0", "--log-level", "WARNING", *args]
    with _child("meshkit registry", cmd, env, None, start_timeout) as child:
        yield child


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
    with _child(f"meshkit run {' '.join(services)}", cmd, env, cwd, start_timeout) as child:
        yield child
