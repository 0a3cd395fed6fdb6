"""The CLI's refusals are one line naming what is wrong and what to do, never a traceback."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshkit.cli import admin_token_path, main

ROOT = Path(__file__).resolve().parents[2]


def meshkit(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "meshkit", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def one_line_error(out: subprocess.CompletedProcess[str], *expected: str) -> None:
    assert out.returncode == 2, out
    assert "Traceback" not in out.stderr, out.stderr
    lines = [line for line in out.stderr.splitlines() if not line.startswith("20")]  # log lines carry a date
    assert len(lines) == 1, out.stderr
    for text in expected:
        assert text in lines[0], lines[0]


@pytest.mark.slow
def test_run_on_a_taken_port_is_one_line(taken_port: int) -> None:
    out = meshkit("run", "tests.policy.services:Stock", "--port", str(taken_port))
    one_line_error(out, f"127.0.0.1:{taken_port}", "--port", "0 picks a free one")


@pytest.mark.slow
def test_registry_on_a_taken_port_is_one_line(taken_port: int) -> None:
    one_line_error(meshkit("registry", "--port", str(taken_port)), f"127.0.0.1:{taken_port}", "--port")


@pytest.mark.slow
def test_an_etcd_registry_without_httpx_is_one_line() -> None:
    code = (
        "import sys; sys.modules['httpx'] = None; from meshkit.cli import main; "
        "raise SystemExit(main(['run', 'tests.policy.services:Stock', '--port', '0', '--registry', "
        "'etcd://127.0.0.1:2379']))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    one_line_error(out, "httpx", "meshkit[etcd]")


def test_call_timeout_must_be_positive(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["call", "127.0.0.1:1", "a.b", "{}", "--timeout", "0"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "--timeout" in err and "more than 0 seconds" in err and "None" not in err


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("nosuch:Adder", "no module named 'nosuch' in the working directory"),
        ("tests.policy.services:Nope", "has no 'Nope'"),
        ("tests.policy.services", "expected MODULE:Class"),
    ],
)
def test_run_with_a_bad_service_name_says_what_is_wrong(spec: str, says: str) -> None:
    """``meshkit run`` resolves names as the gateway does (meshkit.rpc.loading), with its words."""
    with pytest.raises(SystemExit) as exit_:
        main(["run", spec, "--port", "0"])
    message = str(exit_.value.code)
    assert message.startswith("meshkit: ") and says in message, message


@pytest.mark.parametrize("value", ["-1", "soon"])
def test_registry_self_preservation_is_zero_or_more_seconds(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["registry", "--self-preservation", value])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "--self-preservation" in err and ("0 (off) or more seconds" in err or "a number of seconds" in err)


def test_switch_needs_a_target(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["switch", "stock.reserve", "on"])
    assert exit_.value.code == 2 and "--target" in capsys.readouterr().err


def test_the_admin_token_file_is_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from meshkit.cli import _write_admin_token

    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    path = _write_admin_token(7123, "tok")
    assert path == admin_token_path(7123) and path.read_text() == "tok\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
