"""``meshkit switch`` against a running ``meshkit run --policy`` process, and SIGHUP reloads."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshkit.testing import spawn

ROOT = Path(__file__).resolve().parents[2]


def meshkit(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "meshkit", *args], capture_output=True, text=True, timeout=60, cwd=ROOT
    )


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[str, Path, int]]:
    policy = tmp_path / "policy.toml"
    policy.write_text("[switches]\n")
    with spawn(
        [sys.executable, "-m", "meshkit", "run", "tests.policy.services:Stock", "--port", "0", "--policy", str(policy)],
        ready=r"on (127\.0\.0\.1:\d+)",
        stderr="discard",
        cwd=ROOT,
        timeout=30,
    ) as proc:
        assert proc.ready_match is not None
        yield proc.ready_match[1], policy, proc.pid
        proc.signal(signal.SIGHUP)  # the process must survive a reload to the end
        assert proc.stop(grace=30) == 0 and not proc.escalated


def call(target: str, method: str, args: dict[str, str]) -> str:
    out = meshkit("call", target, method, json.dumps(args))
    return out.stdout.strip() or out.stderr.strip()


@pytest.mark.slow
def test_switch_degrades_a_running_process_and_restores_it(running: tuple[str, Path, int]) -> None:
    target, policy, pid = running
    assert call(target, "stock.reserve", {"item": "a"}) == '"reserved a"'
    out = meshkit("switch", "stock.reserve", "on", "--target", target)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)[target]["switches"] == {"stock.reserve": True}
    assert call(target, "stock.reserve", {"item": "b"}) == '"deferred b"'
    status = json.loads(meshkit("switch", "--target", target).stdout)[target]
    assert status["switches"] == {"stock.reserve": True} and "shedder" in status
    assert meshkit("switch", "stock.reserve", "off", "--target", target).returncode == 0
    assert call(target, "stock.reserve", {"item": "c"}) == '"reserved c"'
    # The policy file's [switches] are re-read on SIGHUP.
    policy.write_text('[switches]\n"stock.peek" = true\n')
    os.kill(pid, signal.SIGHUP)
    deadline = time.monotonic() + 10
    while "degraded by a switch on this server" not in call(target, "stock.peek", {"item": "d"}):
        assert time.monotonic() < deadline, "SIGHUP did not apply the policy file's switches"
    assert "UNAVAILABLE" in call(target, "stock.peek", {"item": "d"})


def test_switch_usage_errors() -> None:
    from meshkit.cli import main

    assert main(["switch", "stock.reserve", "--target", "127.0.0.1:1"]) == 2
    assert main(["switch", "stock.reserve", "on", "--target", "nope"]) == 2
    assert main(["switch", "stock.reserve", "on", "--target", "127.0.0.1:1", "--timeout", "0.5"]) == 1


@pytest.mark.slow
def test_changes_need_the_token_that_meshkit_run_generated(tmp_path: Path) -> None:
    env = {**os.environ, "XDG_RUNTIME_DIR": str(tmp_path)}
    with spawn(
        [sys.executable, "-m", "meshkit", "run", "tests.policy.services:Stock", "--port", "0"],
        ready=r"on (127\.0\.0\.1:\d+)",
        stderr="discard",
        cwd=ROOT,
        env=env,
        timeout=30,
    ) as proc:
        assert proc.ready_match is not None
        target = proc.ready_match[1]
        token_file = Path(proc.expect(r"admin token in (\S+)", timeout=30)[1])
        assert token_file.read_text().strip()

        def switch(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "meshkit", "switch", *args, "--target", target],
                capture_output=True,
                text=True,
                timeout=60,
                cwd=ROOT,
                env={**env, **extra},
            )

        # Someone without the file (another user, another machine): refused, nothing changed.
        refused = switch("stock.reserve", "on", XDG_RUNTIME_DIR=str(tmp_path / "elsewhere"))
        assert refused.returncode == 1 and "UNAUTHENTICATED" in refused.stderr
        wrong = switch("stock.reserve", "on", "--token", "guess")
        assert wrong.returncode == 1 and "UNAUTHENTICATED" in wrong.stderr
        assert json.loads(switch().stdout)[target]["switches"] == {}  # reading stays open
        # The operator on this machine: the file is found by itself.
        assert switch("stock.reserve", "on").returncode == 0
        assert json.loads(switch().stdout)[target]["switches"] == {"stock.reserve": True}
        assert proc.stop(grace=30) == 0 and not proc.escalated
        assert not token_file.exists()  # removed on exit
