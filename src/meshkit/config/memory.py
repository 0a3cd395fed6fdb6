"""``memory://[space]``: a configuration store inside one process, for unit tests and the demo.

It keeps the engines' contract (see :mod:`meshkit.config.backend`) on one
:class:`~meshkit.config.log.RevisionLog` per space: stores opened with the same ``space`` (the
URL's host part; empty is a space too) share their keys, like processes sharing an engine.
:func:`reset` forgets every space (tests call it between cases). Nothing outlives the process.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

from meshkit.config.backend import Change, Changes, Entry, Listing
from meshkit.config.log import RevisionLog
from meshkit.schemes import BackendURL


class _Space:
    def __init__(self) -> None:
        #: Which store this is: a new space is a new store, even under an old name.
        self.store_id = uuid.uuid4().hex
        self.log = RevisionLog()
        self.watchers: set[asyncio.Event] = set()

    def changed(self) -> None:
        for event in self.watchers:
            event.set()


_spaces: dict[str, _Space] = {}


def reset() -> None:
    """Forget every key of every space (between tests)."""
    _spaces.clear()


class MemoryConfig:
    """The configuration store of one space of this process."""

    def __init__(self, space: str = "") -> None:
        self.space = space
        self._space = _spaces.setdefault(space, _Space())

    @property
    def log(self) -> RevisionLog:
        return self._space.log

    @property
    def store_id(self) -> str:
        return self._space.store_id

    async def get(self, key: str) -> Entry | None:
        return self.log.get(key)

    async def put(self, key: str, value: bytes, expect: int | None) -> int:
        change = self.log.plan_put(key, value, expect)
        self.log.apply(change)
        self._space.changed()
        return change.revision

    async def delete(self, key: str, expect: int | None) -> int | None:
        change = self.log.plan_delete(key, expect)
        if change is None:
            return None
        self.log.apply(change)
        self._space.changed()
        return change.revision

    async def list(self, prefix: str) -> Listing:
        return self.log.list(prefix)

    async def watch(self, prefix: str, since: int) -> AsyncIterator[Change]:
        woken = asyncio.Event()
        self._space.watchers.add(woken)
        try:
            seen = since
            while True:
                woken.clear()
                for change in self.log.since(prefix, seen):
                    seen = change.revision
                    yield change
                await woken.wait()
        finally:
            self._space.watchers.discard(woken)

    async def history(self, key: str) -> Changes:
        return self.log.history(key)

    async def close(self) -> None:
        pass


def open_memory(url: BackendURL) -> MemoryConfig:
    """``memory://space`` (the space may be empty)."""
    return MemoryConfig(url.netloc)
