"""``meshkit bench --help`` names the command it is and lists exactly the systems a plain
``meshkit bench`` runs."""

from __future__ import annotations

import re

import pytest

from meshkit.benchmark import harness
from meshkit.cli import main


@pytest.fixture(autouse=True)
def _unwrapped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "1000")  # argparse wraps at the terminal's width (and at hyphens)


def _help(capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exited:
        main(["bench", "--help"])
    assert exited.value.code == 0
    return " ".join(capsys.readouterr().out.split())


def test_bench_help_is_the_meshkit_bench_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert _help(capsys).startswith("usage: meshkit bench ")


def test_bench_help_lists_the_systems_run_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    text = _help(capsys)
    listed = re.search(r"--systems NAME,NAME systems to run, comma-separated \(default ([\w,-]+)[;)]", text)
    assert listed, text
    run_by_default = harness.build_parser().parse_args([]).systems
    assert listed.group(1).split(",") == run_by_default
    assert set(run_by_default) < set(harness.ALL_SYSTEMS)  # the others are there on request


def test_a_bench_usage_error_names_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["bench", "--systems", "nope"])
    assert exited.value.code == 2
    assert capsys.readouterr().err.startswith("usage: meshkit bench ")
