"""Start a child process, know when it is ready, stop it by PID: the one way meshkit does it.

``meshkit demo``, ``meshkit bench``, ``service_process``/``registry_process`` and the tests that
run real processes all need the same few things, and each had its own copy with its own gaps (a
``readline`` with no deadline, an error that gave an exit code and nothing of what the child said,
a pipe nobody read once the ready line was in). Here they are once:

* start ``argv`` with ``env`` laid over this process's environment (a value of None removes
  a variable), in ``cwd``, stdin from /dev/null, by default leading a process group of its own
  (so Ctrl-C in a terminal reaches only the parent, and a signal reaches whatever the child forked);
* read its stdout (and, with ``stderr="capture"``, its stderr) on a thread, so a chatty child
  never blocks on a full pipe, keeping the last lines for error messages (``echo`` copies every
  line to a stream as well);
* ``wait_ready``: a stdout line matching a pattern and/or a TCP port accepting, before a
  deadline; a child that exits or runs out of time first raises ``ChildNotReady``, which names it,
  gives its exit code and its last output lines;
* ``signal``/``pause``/``resume``/``kill``/``terminate`` for fault tests, and ``stop``: SIGTERM,
  up to ``grace`` seconds, then SIGKILL (``grace=0``: SIGKILL at once), always by PID (the group).

    with spawn([sys.executable, "-m", "meshkit", "registry", "--port", "0"],
               ready=r"registry serving on (\\S+)") as registry:
        address = registry.ready_match[1]

Why it lives in ``meshkit.testing`` and who may import it: the import-linter layers contract puts
``meshkit.cli : meshkit.demo : meshkit.testing : meshkit.benchmark : meshkit.registry`` in the
top layer, and ``:`` joins siblings that are *not* independent (``|`` would make them
independent), so ``meshkit.demo`` and ``meshkit.benchmark`` may import this module as the contract
stands (as ``meshkit.cli`` imports both of them); nothing in the lower layers may. Were those
siblings made independent, this module would have to move a layer down with the contract saying
so. It imports the standard library only; its package adds the fault proxy and the netns helper
to what ``import meshkit`` loads anyway.
"""

from __future__ import annotations

import os
import re
import signal as signals
import socket
import subprocess
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Literal, Self, TextIO

__all__ = ["ChildNotReady", "ChildProcess", "spawn"]

#: How a child's stderr is handled: left on ours, read with its stdout (into the kept lines, and
#: the ready pattern may match it), or thrown away.
Stderr = Literal["inherit", "capture", "discard"]
_STDERR = {"inherit": None, "capture": subprocess.STDOUT, "discard": subprocess.DEVNULL}
#: Lines read but not yet looked at by ``wait_ready``/``expect`` (beyond this the oldest go).
_PENDING_MAX = 10_000
#: While waiting for a port: how long to wait between two connection attempts.
_PORT_POLL = 0.05


class ChildNotReady(RuntimeError):
    """A child process exited, or ran out of time, before it was ready: the message names it and
    shows its exit code (when it has one) and its last output lines."""

    def __init__(self, child: ChildProcess, what: str) -> None:
        self.name = child.name
        self.pid = child.pid
        self.returncode = child.proc.poll()
        self.output = child.tail()
        message = f"{self.name} (pid {self.pid}) {what}"
        if self.returncode is not None:
            message += f" (exit code {self.returncode})"
        if self.output:
            message += "; its last output:\n" + "\n".join(self.output)
        super().__init__(message)


class ChildProcess:
    """A started child process (see the module docstring); a context manager that stops it."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        name: str | None = None,
        env: Mapping[str, str | None] | None = None,
        cwd: str | Path | None = None,
        stderr: Stderr = "inherit",
        echo: TextIO | None = None,
        new_session: bool = True,
        grace: float = 5.0,
        keep: int = 40,
    ) -> None:
        self.argv = list(argv)
        self.name = name or " ".join(Path(a).name if i == 0 else a for i, a in enumerate(self.argv[:4]))
        self.grace = grace
        self.new_session = new_session
        #: The match of the ready line (``wait_ready(ready=...)``), or None.
        self.ready_match: re.Match[str] | None = None
        #: True once ``stop`` had to SIGKILL it because it outlived its grace after SIGTERM.
        self.escalated = False
        merged = dict(os.environ)
        for key, value in (env or {}).items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = value
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=_STDERR[stderr],
            cwd=cwd,
            env=merged,
            text=True,
            errors="replace",
            start_new_session=new_session,
        )
        self._echo = echo
        self._changed = threading.Condition()
        self._tail: deque[str] = deque(maxlen=keep)
        self._pending: deque[str] = deque(maxlen=_PENDING_MAX)
        self._eof = False
        self._reader = threading.Thread(target=self._read, name=f"output of pid {self.proc.pid}", daemon=True)
        self._reader.start()

    # -- what it is ----------------------------------------------------------------------------
    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.proc.poll()

    def tail(self, lines: int | None = None) -> list[str]:
        """Its last output lines (up to ``keep``), oldest first."""
        with self._changed:
            kept = list(self._tail)
        return kept if lines is None else kept[-lines:]

    def _read(self) -> None:
        stream = self.proc.stdout
        assert stream is not None
        try:
            for raw in stream:
                line = raw.rstrip("\r\n")
                if self._echo is not None:
                    try:
                        print(line, file=self._echo, flush=True)
                    except (OSError, ValueError):  # the stream is closed: keep reading regardless
                        self._echo = None
                with self._changed:
                    self._tail.append(line)
                    self._pending.append(line)
                    self._changed.notify_all()
        except (OSError, ValueError):  # the pipe was closed under us
            pass
        finally:
            with self._changed:
                self._eof = True
                self._changed.notify_all()

    # -- readiness -----------------------------------------------------------------------------
    def expect(self, pattern: str | re.Pattern[str], timeout: float) -> re.Match[str]:
        """The next output line matching ``pattern`` (``re.search``), read within ``timeout``
        seconds; lines before it are passed over. ChildNotReady if it ends or time runs out first."""
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                while self._pending:
                    match = regex.search(self._pending.popleft())
                    if match:
                        return match
                left = deadline - time.monotonic()
                if self._eof or left <= 0:
                    break
                self._changed.wait(left)
        if not self._eof:
            raise ChildNotReady(self, f"printed no line matching {regex.pattern!r} within {timeout:g} s")
        self._reap(deadline)
        raise ChildNotReady(self, f"ended its output without a line matching {regex.pattern!r}")

    def wait_port(self, port: int, timeout: float, host: str = "127.0.0.1") -> None:
        """Return once ``host:port`` accepts a TCP connection; ChildNotReady if the child exits or
        ``timeout`` seconds pass first."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                with socket.create_connection((host, port), timeout=max(0.01, min(left, 1.0))):
                    return
            except OSError:
                pass
            if self.proc.poll() is not None:
                with self._changed:  # the error shows its output: let the reader reach the end of it
                    self._changed.wait_for(lambda: self._eof, timeout=1.0)
                raise ChildNotReady(self, f"exited before {host}:{port} accepted connections")
            left = deadline - time.monotonic()
            if left <= 0:
                raise ChildNotReady(self, f"did not accept connections on {host}:{port} within {timeout:g} s")
            try:  # the pause between attempts, which also notices an exit at once
                self.proc.wait(timeout=min(left, _PORT_POLL))
            except subprocess.TimeoutExpired:
                pass

    def wait_ready(
        self,
        ready: str | re.Pattern[str] | None = None,
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        timeout: float = 20.0,
    ) -> re.Match[str] | None:
        """Wait, ``timeout`` seconds in all, for a line matching ``ready`` (kept as
        ``ready_match`` and returned), then for ``port`` to accept connections."""
        deadline = time.monotonic() + timeout
        if ready is not None:
            self.ready_match = self.expect(ready, timeout)
        if port is not None:
            self.wait_port(port, max(0.0, deadline - time.monotonic()), host)
        return self.ready_match

    def _reap(self, deadline: float) -> None:
        """After EOF the child is on its way out: give it until ``deadline`` (at most 1 s) to go,
        so an error can show its exit code."""
        try:
            self.proc.wait(timeout=max(0.0, min(1.0, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            pass

    # -- signals and stopping ------------------------------------------------------------------
    def signal(self, sig: int) -> None:
        """Send ``sig`` to the child's process group (to the child alone with ``new_session=False``).
        Only while it is not reaped: until then its id cannot name another process or group."""
        if self.proc.returncode is not None:
            return
        try:
            if self.new_session:
                os.killpg(self.proc.pid, sig)
            else:
                os.kill(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):  # gone already
            pass

    def kill(self) -> None:
        """SIGKILL: it dies at once, mid-call."""
        self.signal(signals.SIGKILL)

    def pause(self) -> None:
        """SIGSTOP: frozen; its sockets stay open."""
        self.signal(signals.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT."""
        self.signal(signals.SIGCONT)

    def terminate(self) -> None:
        """SIGTERM: a graceful stop."""
        self.signal(signals.SIGTERM)

    def wait(self, timeout: float | None = None) -> int:
        """Its exit code, once it has exited (subprocess.TimeoutExpired after ``timeout`` s)."""
        return self.proc.wait(timeout=timeout)

    def stop(self, grace: float | None = None) -> int:
        """Stop it and reap it: SIGCONT (a paused child could not act on SIGTERM), SIGTERM, then
        SIGKILL if it is still there after ``grace`` seconds (default: the one it was started
        with; 0: SIGKILL at once). Returns its exit code. Safe to call again."""
        grace = self.grace if grace is None else grace
        if self.proc.returncode is None:
            self.resume()
            if grace > 0:
                self.terminate()
                try:
                    self.proc.wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    self.escalated = True
            # Even when the child itself has exited (but is not reaped yet): whatever it forked
            # into its group goes too.
            self.kill()
        code = self.proc.wait(timeout=10)
        self._reader.join(timeout=2)  # EOF follows the exit, unless something outside holds the pipe
        if not self._reader.is_alive() and self.proc.stdout is not None:
            self.proc.stdout.close()
        return code

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


def spawn(
    argv: Sequence[str],
    *,
    ready: str | re.Pattern[str] | None = None,
    port: int | None = None,
    host: str = "127.0.0.1",
    timeout: float = 20.0,
    name: str | None = None,
    env: Mapping[str, str | None] | None = None,
    cwd: str | Path | None = None,
    stderr: Stderr = "inherit",
    echo: TextIO | None = None,
    new_session: bool = True,
    grace: float = 5.0,
    keep: int = 40,
) -> ChildProcess:
    """Start ``argv`` and wait until it is ready (``ChildProcess.wait_ready``); if it is not, stop
    it and raise ChildNotReady. The caller stops it (``with spawn(...) as child:``, or ``stop()``)."""
    child = ChildProcess(
        argv, name=name, env=env, cwd=cwd, stderr=stderr, echo=echo, new_session=new_session, grace=grace, keep=keep
    )
    try:
        child.wait_ready(ready, port=port, host=host, timeout=timeout)
    except BaseException:
        child.stop()
        raise
    return child
