"""meshkit.testing.spawn: ready on a line or a port, a clear error with the child's last output
when it exits or runs out of time first, and a stop that escalates to SIGKILL. The children are
tiny ``python -c`` programs; every wait has a deadline."""

from __future__ import annotations

import io
import os
import signal
import socket
import sys
import time

import pytest

from meshkit.testing import ChildNotReady, ChildProcess, spawn

PY = sys.executable


def test_ready_on_a_line_keeps_the_match_and_the_lines_before_it() -> None:
    code = "import sys, time; print('warming up'); print('READY on 127.0.0.1:9', flush=True); time.sleep(60)"
    with spawn([PY, "-c", code], ready=r"READY on (\S+)", timeout=20) as child:
        assert child.running
        assert child.ready_match is not None and child.ready_match[1] == "127.0.0.1:9"
        assert child.tail() == ["warming up", "READY on 127.0.0.1:9"]
    assert not child.running


def test_expect_reads_lines_after_ready_and_echo_forwards_them() -> None:
    code = "import time; print('one'); print('two', flush=True); time.sleep(60)"
    echo = io.StringIO()
    with spawn([PY, "-c", code], ready="^one$", echo=echo, timeout=20) as child:
        assert child.expect("^t(w)o$", timeout=20)[1] == "w"
    assert echo.getvalue().splitlines() == ["one", "two"]


def test_a_child_that_exits_early_is_an_error_with_its_output_and_exit_code() -> None:
    code = "import sys; print('starting'); print('boom: no config', file=sys.stderr); sys.exit(3)"
    with pytest.raises(ChildNotReady) as caught:
        spawn([PY, "-c", code], name="the app", ready="READY", stderr="capture", timeout=20)
    err = caught.value
    assert err.returncode == 3 and err.output == ["starting", "boom: no config"]
    text = str(err)
    assert text.startswith(f"the app (pid {err.pid}) ended its output without a line matching 'READY'"), text
    assert "(exit code 3)" in text and text.endswith("its last output:\nstarting\nboom: no config"), text


def test_a_child_that_never_gets_ready_times_out_and_is_stopped() -> None:
    code = "import time; print('still thinking', flush=True); time.sleep(60)"
    started = time.monotonic()
    with pytest.raises(
        ChildNotReady, match=r"(?s)printed no line matching 'READY' within 0.5 s; .*still thinking"
    ) as e:
        spawn([PY, "-c", code], ready="READY", timeout=0.5, grace=0)
    assert time.monotonic() - started < 15
    with pytest.raises(ProcessLookupError):  # stopped and reaped on the way out
        os.kill(e.value.pid, 0)


def test_ready_on_a_port() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code = (
        "import socket, time\n"
        "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        f"s.bind(('127.0.0.1', {port})); s.listen(); time.sleep(60)\n"
    )
    with spawn([PY, "-c", code], port=port, timeout=20) as child:
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
        assert child.ready_match is None
    code = "import sys; print('no port for me'); sys.exit(1)"
    with pytest.raises(
        ChildNotReady, match=rf"(?s)exited before 127.0.0.1:{port} accepted.*exit code 1.*no port for me"
    ):
        spawn([PY, "-c", code], port=port, timeout=20)


def test_stop_escalates_to_sigkill_for_a_child_ignoring_sigterm() -> None:
    code = (
        "import signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('ignoring SIGTERM', flush=True)\n"
        "time.sleep(60)\n"
    )
    child = spawn([PY, "-c", code], ready="ignoring SIGTERM", timeout=20, grace=0.3)
    assert child.stop() == -signal.SIGKILL
    assert child.escalated
    assert child.stop() == -signal.SIGKILL  # again: a no-op


def test_stop_is_sigterm_first() -> None:
    code = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *_: sys.exit(7))\n"
        "print('up', flush=True)\n"
        "time.sleep(60)\n"
    )
    child = spawn([PY, "-c", code], ready="up", timeout=20)
    assert child.stop() == 7 and not child.escalated


def test_pause_resume_kill_reach_the_child() -> None:
    code = "import time; print('up', flush=True); time.sleep(60)"
    with ChildProcess([PY, "-c", code]) as child:
        child.wait_ready("up", timeout=20)
        child.pause()
        deadline = time.monotonic() + 10
        while _state(child.pid) != "T":  # stopped
            assert time.monotonic() < deadline, _state(child.pid)
        child.resume()
        while _state(child.pid) == "T":
            assert time.monotonic() < deadline, _state(child.pid)
        child.kill()
        assert child.wait(timeout=10) == -signal.SIGKILL
    assert child.stop() == -signal.SIGKILL  # reaped already: nothing is signalled


def test_env_is_laid_over_ours_and_none_removes_a_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPAWN_KEEP", "kept")
    monkeypatch.setenv("SPAWN_DROP", "dropped")
    code = "import os; print(os.environ.get('SPAWN_KEEP'), os.environ.get('SPAWN_DROP'), os.environ['SPAWN_NEW'])"
    with ChildProcess([PY, "-c", code], env={"SPAWN_DROP": None, "SPAWN_NEW": "new"}) as child:
        assert child.expect(".", timeout=20).string == "kept None new"
        assert child.wait(timeout=20) == 0


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rpartition(")")[2].split()[0]
