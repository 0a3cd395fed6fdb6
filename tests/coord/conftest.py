"""Every coord test starts with empty memory:// spaces."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from meshkit.coord import memory


@pytest.fixture(autouse=True)
def _fresh_memory_spaces() -> Iterator[None]:
    memory.reset()
    yield
    memory.reset()
