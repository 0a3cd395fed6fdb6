"""The lock and election scheme tables: declared in code and in pyproject.toml alike."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from meshkit.coord import (
    ELECTIONS_GROUP,
    LOCKS_GROUP,
    Election,
    Locks,
    election_backends,
    lock_backends,
    register_lock_backend,
)
from meshkit.coord.memory import MemoryLocks
from meshkit.schemes import BackendURL

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("group", "table"), [(LOCKS_GROUP, lock_backends), (ELECTIONS_GROUP, election_backends)])
def test_pyproject_declares_the_backends_the_code_declares(group: str, table: object) -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"][group]
    assert declared == table.declared  # type: ignore[attr-defined]


def test_a_third_party_lock_backend_is_opened_by_its_scheme(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lock_backends, "declared", dict(lock_backends.declared))
    opened: list[BackendURL] = []

    def open_custom(url: BackendURL) -> MemoryLocks:
        opened.append(url)
        return MemoryLocks("custom")

    register_lock_backend("custom", open_custom)
    locks = Locks("custom://somewhere/x")
    assert isinstance(locks.backend, MemoryLocks) and opened[0].netloc == "somewhere"


def test_an_election_needs_a_backend_that_can_say_who_holds_a_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(election_backends, "declared", dict(election_backends.declared))

    class LocksOnly:
        async def acquire(self) -> None: ...
        async def renew(self) -> None: ...
        async def release(self) -> None: ...
        async def close(self) -> None: ...

    election_backends.register("locksonly", lambda url: LocksOnly())  # type: ignore[arg-type,return-value]
    with pytest.raises(TypeError, match="lacks holder, watch"):
        Election("locksonly://x", "leader")
