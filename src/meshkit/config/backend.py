"""What a configuration backend is, and the records it hands out.

Every engine (memory, a directory of files, etcd, ZooKeeper, the built-in registry) is one module
implementing :class:`ConfigBackend`; :class:`meshkit.config.ConfigStore` checks keys, values and
revisions before a backend sees them and adds what is the same everywhere (rollback).

The contract each backend keeps (tests/config/contract.py checks it):

- **One revision counter per store.** Every write (a put, or a delete that deleted something)
  gets the next revision of the whole store, as etcd's do; an :class:`Entry` carries the revision
  of the write that made its value.
- **Compare-and-set.** ``put``/``delete`` with ``expect=REV`` write only if the key's revision is
  ``REV`` (0: the key must not exist), else raise :class:`~meshkit.errors.Conflict` naming the
  revision found; ``expect=None`` writes whatever is there.
- **Watch.** ``watch(prefix, since)`` yields every change of a key under ``prefix`` with a revision
  above ``since``, in revision order, none lost and none twice, then waits for more; a backend that
  no longer has revisions that old raises :class:`~meshkit.errors.Compacted`.
- **Errors are translated** at this boundary: an engine that cannot be reached raises
  :class:`~meshkit.errors.ConfigUnavailable` (with how to start it), never the driver's own type.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Entry:
    """A key's current value and the store revision that wrote it."""

    key: str
    value: bytes
    revision: int

    @property
    def text(self) -> str:
        """The value as UTF-8 text (what policy files and most configuration are)."""
        return self.value.decode()


@dataclass(frozen=True, slots=True)
class Change:
    """One write of one key: its new value, or None for a deletion, at ``revision``."""

    key: str
    value: bytes | None
    revision: int

    @property
    def deleted(self) -> bool:
        return self.value is None


#: A run of changes in revision order (an alias, as the backends' ``list`` method hides the builtin).
Changes = list[Change]


@dataclass(frozen=True, slots=True)
class Listing:
    """The entries under a prefix (sorted by key) as of ``revision``: watch from there to miss
    nothing that happens after the listing."""

    entries: list[Entry] = field(default_factory=list)
    revision: int = 0

    def __iter__(self) -> Iterator[Entry]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)


class ConfigBackend(Protocol):
    """One engine's configuration store (see the module docstring for the contract)."""

    async def get(self, key: str) -> Entry | None: ...

    async def put(self, key: str, value: bytes, expect: int | None) -> int:
        """Write ``value``; returns the new revision."""
        ...

    async def delete(self, key: str, expect: int | None) -> int | None:
        """Delete the key; returns the revision of the deletion, or None if there was nothing to
        delete (and ``expect`` allowed that: None or 0)."""
        ...

    async def list(self, prefix: str) -> Listing: ...

    def watch(self, prefix: str, since: int) -> AsyncIterator[Change]: ...

    async def history(self, key: str) -> Changes:
        """Every change of ``key`` the backend still keeps, oldest first."""
        ...

    async def close(self) -> None: ...
