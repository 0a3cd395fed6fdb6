"""meshkit.testing.spawn: a child that never prints its ready line fails within its timeout, and
pause/resume/stop reach the service even behind a forking prefix (they signal the process group)."""

from __future__ import annotations

import sys
import time

import pytest

from meshkit.testing.spawn import ChildNotReady, spawn


def test_start_timeout_bounds_a_silent_child() -> None:
    cmd = [sys.executable, "-c", "import time; time.sleep(4)"]
    start = time.monotonic()
    with pytest.raises(ChildNotReady), spawn(cmd, ready="never printed", timeout=0.3):
        pass
    assert time.monotonic() - start < 2.0, "start_timeout=0.3 s was not honoured"


def _state(pid: int) -> str | None:
    """The process's state letter from /proc (None: it is gone or a zombie waiting to be reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return None
    return None if state in ("Z", "X") else state


def _until(condition: object, timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.01)  # polling a condition, bounded
    return False


def test_signals_reach_a_service_started_through_a_forking_prefix() -> None:
    # sh forks the "service" (it does not exec it, because of "; wait"), as sudo or a wrapper would.
    service = "import os, time; print(f'ready on {os.getpid()}', flush=True); time.sleep(60)"
    cmd = ["sh", "-c", f'{sys.executable} -c "{service}" & wait']
    with spawn(cmd, ready=r"^ready on (\d+)$", timeout=10.0, grace=0) as child:
        assert child.ready_match is not None
        grandchild = int(child.ready_match[1])
        assert grandchild != child.pid
        child.pause()
        assert _until(lambda: _state(grandchild) == "T"), "SIGSTOP did not reach the service"
        child.resume()
        assert _until(lambda: _state(grandchild) in ("S", "R"))
    assert _until(lambda: _state(grandchild) is None), "the service outlived its context"
