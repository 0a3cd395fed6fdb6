"""rpc's governance hooks: what ``policy="path.toml"`` and the admin breaker status resolve to."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import meshkit  # noqa: F401  (registers meshkit.policy's loader, as every user's import does)
from meshkit.policy import Policy

hooks = sys.modules["meshkit.rpc.hooks"]  # ``meshkit.rpc`` the attribute is the @rpc decorator


def test_importing_meshkit_registers_the_policy_loader(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text('[switches]\n"svc.m" = false\n')
    assert isinstance(hooks.load_policy(str(path)), Policy)


def test_without_a_loader_a_policy_path_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hooks, "_loader", None)
    with pytest.raises(RuntimeError, match="needs a policy loader"):
        hooks.load_policy("policy.toml")


def test_breaker_status_is_empty_without_governance(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hooks, "_breaker_status", None)
    assert hooks.process_breakers() == {}
