"""``meshkit lock`` / ``meshkit elect``: a command run under a lock, its token in MESHKIT_FENCE."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from meshkit.cli import main
from meshkit.cli.common import EXIT_USAGE
from meshkit.cli.coord import EXIT_LOCK_LOST, EXIT_LOCK_TIMEOUT, split_command
from meshkit.testing import spawn
from tests.helpers import CHILD_PYTHONPATH
from tests.resilience.redis_engine import closed_port


def test_the_command_runs_with_the_token_and_its_status_is_meshkits(capfd: pytest.CaptureFixture[str]) -> None:
    status = main(
        ["lock", "job", "--backend", "memory://", "--", "sh", "-c", 'echo "$MESHKIT_LOCK $MESHKIT_FENCE"; exit 3']
    )
    assert status == 3
    assert capfd.readouterr().out.split() == ["job", "1"]


def test_elect_runs_the_command_as_leader(capfd: pytest.CaptureFixture[str]) -> None:
    status = main(
        [
            "elect",
            "sched",
            "node-a",
            "--backend",
            "memory://",
            "--",
            "sh",
            "-c",
            'echo "$MESHKIT_LEADER $MESHKIT_FENCE"',
        ]
    )
    assert status == 0
    assert capfd.readouterr().out.split() == ["node-a", "1"]


def test_the_commands_own_flags_are_not_read_as_meshkits() -> None:
    assert split_command(["lock", "j", "--backend", "x", "--", "ls", "--ttl", "--", "y"]) == (
        ["lock", "j", "--backend", "x"],
        ["ls", "--ttl", "--", "y"],
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["lock", "", "--backend", "memory://", "--", "true"], "a lock name must not be empty"),
        (["lock", "j", "--backend", "nope://", "--", "true"], "unknown lock URL 'nope://'"),
        (["lock", "j", "--backend", "memory://"], "give the command to run after --"),
    ],
)
def test_bad_input_is_one_line_and_a_usage_status(
    argv: list[str], message: str, capfd: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == EXIT_USAGE
    assert message in capfd.readouterr().err


def test_a_command_that_cannot_start_is_127_and_the_lock_is_released(capfd: pytest.CaptureFixture[str]) -> None:
    assert main(["lock", "j", "--backend", "memory://", "--", "/nonexistent/cmd"]) == 127
    assert "cannot run '/nonexistent/cmd'" in capfd.readouterr().err


def test_the_timeout_status_is_documented_in_the_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["lock", "--help"])
    assert f"{EXIT_LOCK_TIMEOUT} not granted within --wait" in " ".join(capsys.readouterr().out.split())


@pytest.fixture
def registry_address() -> Iterator[str]:
    with spawn(
        [sys.executable, "-m", "meshkit", "registry", "--port", str(closed_port())],
        ready=r"registry serving on (\S+)",
        env={"PYTHONPATH": CHILD_PYTHONPATH},
        name="registry",
    ) as registry:
        yield registry.ready_match[1]  # type: ignore[index]


def _lock_command(address: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "meshkit", "lock", "job", "--backend", f"meshkit://{address}", *args]


@pytest.mark.slow
def test_a_second_holder_is_refused_while_the_first_runs_and_gets_the_next_token(registry_address: str) -> None:
    env = {"PYTHONPATH": CHILD_PYTHONPATH}
    with spawn(
        _lock_command(registry_address, "--", "sh", "-c", 'echo "held $MESHKIT_FENCE"; sleep 30'),
        ready=r"held (\d+)",
        env=env,
        name="first holder",
    ) as first:
        second = subprocess.run(
            _lock_command(registry_address, "--wait", "0", "--", "true"),
            capture_output=True,
            text=True,
            timeout=30,
            env={**os.environ, **env},
        )
        assert second.returncode == EXIT_LOCK_TIMEOUT, second.stderr
        assert "not granted" in second.stderr
        first.terminate()  # passed on to its command; the lock is released on the way out
        first.wait(30)
    third = subprocess.run(
        _lock_command(registry_address, "--wait", "5", "--", "sh", "-c", 'echo "$MESHKIT_FENCE"'),
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **env},
    )
    assert third.returncode == 0, third.stderr
    assert int(third.stdout) > int(first.ready_match[1])  # type: ignore[index]


@pytest.mark.slow
def test_a_lost_lock_stops_the_command_and_exits_lock_lost() -> None:
    port = closed_port()
    env = {"PYTHONPATH": CHILD_PYTHONPATH}
    argv = [sys.executable, "-m", "meshkit", "registry", "--port", str(port)]
    registry = spawn(argv, ready=r"registry serving on", env=env, name="registry")
    holder = spawn(
        _lock_command(f"127.0.0.1:{port}", "--ttl", "1", "--grace", "1", "--", "sh", "-c", "echo held; exec sleep 60"),
        ready=r"^held",
        env=env,
        stderr="capture",
        name="holder",
    )
    try:
        registry.stop()  # a registry restart forgets every holder: the next renewal says so
        registry = spawn(argv, ready=r"registry serving on", env=env, name="registry again")
        assert holder.wait(30) == EXIT_LOCK_LOST
        assert any("lost 'job' while the command ran" in line for line in holder.tail())
    finally:
        holder.stop()
        registry.stop()
