"""Every test of meshkit.config starts with empty memory:// spaces."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from meshkit.config import memory


@pytest.fixture(autouse=True)
def private_policy_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Live policies made without a cache_dir keep their copies here, not in ~/.cache."""
    monkeypatch.setenv("MESHKIT_CACHE_DIR", str(tmp_path_factory.mktemp("policy-cache")))


@pytest.fixture(autouse=True)
def empty_memory_spaces() -> Iterator[None]:
    memory.reset()
    yield
    memory.reset()
