"""The revision log: a store's keys, their history and its revision counter, with no I/O.

The memory and file backends keep their state in one :class:`RevisionLog` (the file backend
replays its journal into it), so compare-and-set, watch order and history are decided here, once,
and tested without an event loop. A write is decided by :meth:`RevisionLog.plan_put` /
:meth:`RevisionLog.plan_delete` (which check ``expect`` and return the change it would make) and
applied by :meth:`RevisionLog.apply`, so that a backend can make the change durable in between.
"""

from __future__ import annotations

from bisect import bisect_right

from meshkit.config.backend import Change, Changes, Entry, Listing
from meshkit.errors import Compacted, Conflict


class RevisionLog:
    """Every change since the store began (or since ``compacted``), and the current entries."""

    def __init__(self) -> None:
        #: The revision of the last write; 0 for an empty store.
        self.revision = 0
        #: Revisions up to this one are no longer kept (watch from before raises Compacted).
        self.compacted = 0
        self._changes: list[Change] = []
        self._revisions: list[int] = []  # the changes' revisions, for bisecting
        self._current: dict[str, Entry] = {}
        self._by_key: dict[str, list[Change]] = {}

    # -- reading -----------------------------------------------------------------------------
    def get(self, key: str) -> Entry | None:
        return self._current.get(key)

    def list(self, prefix: str) -> Listing:
        entries = sorted((e for k, e in self._current.items() if k.startswith(prefix)), key=lambda e: e.key)
        return Listing(entries, self.revision)

    def since(self, prefix: str, revision: int) -> Changes:
        """The changes of keys under ``prefix`` with a revision above ``revision``, in order."""
        if revision < self.compacted:
            raise Compacted(
                f"revisions up to {self.compacted} are no longer kept (asked for those after {revision}); "
                "list the prefix again and watch from the listing's revision"
            )
        if revision > self.revision:
            raise Compacted(
                f"the store is at revision {self.revision}, before {revision}: it lost revisions (restarted "
                "without persistence?); list the prefix again and watch from the listing's revision"
            )
        start = bisect_right(self._revisions, revision)
        return [c for c in self._changes[start:] if c.key.startswith(prefix)]

    def history(self, key: str) -> Changes:
        return list(self._by_key.get(key, ()))

    # -- writing -----------------------------------------------------------------------------
    def _check(self, key: str, expect: int | None) -> None:
        if expect is None:
            return
        current = self._current.get(key)
        found = current.revision if current is not None else 0
        if found != expect:
            where = f"at revision {found}" if found else "absent"
            wanted = f"revision {expect}" if expect else "absent"
            raise Conflict(f"config key {key!r} is {where}, not {wanted} as expected", current=found)

    def plan_put(self, key: str, value: bytes, expect: int | None) -> Change:
        """The change a put would make (Conflict if ``expect`` does not hold); not applied yet."""
        self._check(key, expect)
        return Change(key, value, self.revision + 1)

    def plan_delete(self, key: str, expect: int | None) -> Change | None:
        """The change a delete would make, or None if there is nothing to delete."""
        self._check(key, expect)
        if key not in self._current:
            return None
        return Change(key, None, self.revision + 1)

    def apply(self, change: Change) -> None:
        """Record ``change``, which must be the next revision (a plan, or a journal's next line)."""
        if change.revision <= self.revision:
            raise ValueError(f"revision {change.revision} is not after the log's {self.revision}")
        self._changes.append(change)
        self._revisions.append(change.revision)
        self._by_key.setdefault(change.key, []).append(change)
        if change.value is None:
            self._current.pop(change.key, None)
        else:
            self._current[change.key] = Entry(change.key, change.value, change.revision)
        self.revision = change.revision  # last: a reader never sees a revision ahead of the entries
