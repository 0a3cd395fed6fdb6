"""``meshkit config``: put from a file or stdin, get, list, watch, history, diff, rollback, with exit
codes a script can act on (1 no such key, 3 --expect did not hold, 2 bad input)."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from meshkit.cli import main
from meshkit.cli.common import EXIT_USAGE
from meshkit.cli.config import EXIT_COMPACTED, EXIT_CONFLICT, EXIT_NOT_FOUND


@pytest.fixture
def store(tmp_path: Path) -> str:
    return f"file://{tmp_path / 'store'}"


def _put(store: str, key: str, text: str, *extra: str, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(text.encode())))
    return main(["config", "put", key, "--store", store, *extra])


def test_put_get_history_diff_and_rollback(
    store: str, tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text("limit = 10\n")
    assert main(["config", "put", "policy/order", str(policy), "--store", store, "--expect", "0"]) == 0
    assert capfd.readouterr().out == "1\n"
    assert _put(store, "policy/order", "limit = 20\n", monkeypatch=monkeypatch) == 0
    assert capfd.readouterr().out == "2\n"
    assert main(["config", "get", "policy/order", "--store", store]) == 0
    out = capfd.readouterr()
    assert (out.out, out.err) == ("limit = 20\n", "revision 2\n")
    assert main(["config", "history", "policy/order", "--store", store]) == 0
    assert capfd.readouterr().out == "1 put policy/order (11 bytes)\n2 put policy/order (11 bytes)\n"
    assert main(["config", "diff", "policy/order", "1", "2", "--store", store]) == 0
    diff = capfd.readouterr().out
    assert "-limit = 10\n" in diff and "+limit = 20\n" in diff
    assert main(["config", "rollback", "policy/order", "--to", "1", "--store", store]) == 0
    assert capfd.readouterr().out == "3\n"
    assert main(["config", "get", "policy/order", "--store", store]) == 0
    assert capfd.readouterr().out == "limit = 10\n"


def test_list_and_watch_since_a_revision(
    store: str, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in ("policy/b", "policy/a", "other"):
        _put(store, key, key, monkeypatch=monkeypatch)
    assert main(["config", "delete", "other", "--store", store]) == 0
    capfd.readouterr()
    assert main(["config", "list", "policy/", "--store", store]) == 0
    assert capfd.readouterr().out == "2 policy/a\n1 policy/b\n"
    assert main(["config", "watch", "--since", "1", "--count", "3", "--store", store]) == 0
    assert capfd.readouterr().out == "2 put policy/a (8 bytes)\n3 put other (5 bytes)\n4 delete other\n"


def test_exit_codes_name_what_went_wrong(
    store: str, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(["config", "get", "missing", "--store", store]) == EXIT_NOT_FOUND
    assert "no key 'missing'" in capfd.readouterr().err
    _put(store, "k", "1", monkeypatch=monkeypatch)
    assert _put(store, "k", "2", "--expect", "0", monkeypatch=monkeypatch) == EXIT_CONFLICT
    assert "is at revision 1, not absent as expected" in capfd.readouterr().err
    assert main(["config", "get", "has space", "--store", store]) == EXIT_USAGE
    assert "has a space" in capfd.readouterr().err
    assert main(["config", "get", "k", "--store", "consul://127.0.0.1:8500"]) == EXIT_USAGE
    assert "known: etcd://, file://, memory://, meshkit://" in capfd.readouterr().err
    assert main(["config", "watch", "--since", "10", "--store", store]) == EXIT_COMPACTED
    assert "lost revisions" in capfd.readouterr().err
    assert main(["config", "put", "k", "/nonexistent/file", "--store", store]) == EXIT_USAGE
    assert "cannot read /nonexistent/file" in capfd.readouterr().err
    with pytest.raises(SystemExit) as usage:
        main(["config", "diff", "k", "soon", "--store", store])
    assert usage.value.code == EXIT_USAGE


GOOD = '[server."stock.peek"]\nlimit = { rate = 5 }\n'
BAD = '[server."stock.peek"]\nlimt = { rate = 5 }\n'


def test_promote_and_rollback_keep_an_invalid_policy_out_of_the_live_key(
    store: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _put(store, "policy/order", GOOD, monkeypatch=monkeypatch) == 0
    assert main(["config", "promote", "policy/order", "--store", store]) == EXIT_NOT_FOUND  # no gray revision
    assert "has no gray revision" in capsys.readouterr().err
    assert _put(store, "policy/order/gray", BAD, monkeypatch=monkeypatch) == 0  # without --policy: written
    assert main(["config", "promote", "policy/order", "--store", store]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "not promoted" in err and "limt" in err
    assert _put(store, "policy/order", BAD, monkeypatch=monkeypatch) == 0
    assert _put(store, "policy/order", GOOD, monkeypatch=monkeypatch) == 0
    bad_revision = 3
    assert (
        main(["config", "rollback", "policy/order", "--to", str(bad_revision), "--store", store, "--policy"])
        == EXIT_USAGE
    )
    assert f"policy/order@{bad_revision}" in capsys.readouterr().err
    assert main(["config", "get", "policy/order", "--store", store]) == 0
    assert "limit = { rate = 5 }" in capsys.readouterr().out  # still the good one


def test_put_policy_names_the_file_for_a_shared_limit_without_redis(
    store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = tmp_path / "shared.toml"
    policy.write_text('[server."stock.peek"]\nlimit = { rate = 5, shared = true }\n')
    assert main(["config", "put", "policy/order", str(policy), "--store", store, "--policy"]) == EXIT_USAGE
    assert f"{policy}: a limit is shared" in capsys.readouterr().err
