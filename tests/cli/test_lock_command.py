"""``meshkit lock`` / ``meshkit elect``: a command run under a lock, its token in MESHKIT_FENCE."""

from __future__ import annotations

import pytest

from meshkit.cli import main
from meshkit.cli.common import EXIT_USAGE
from meshkit.cli.coord import EXIT_LOCK_TIMEOUT, split_command


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
