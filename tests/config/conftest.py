"""Every test of meshkit.config starts with empty memory:// spaces."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from meshkit.config import memory


@pytest.fixture(autouse=True)
def empty_memory_spaces() -> Iterator[None]:
    memory.reset()
    yield
    memory.reset()
