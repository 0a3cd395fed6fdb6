"""Optimistic concurrency: read a row, compute its change, write it only if nobody wrote in between.

The row carries a version column; :func:`versioned_update` reads the row, calls ``change(row)`` for
the new values, and writes them with::

    UPDATE t SET …, version = version + 1 WHERE key = $k AND version = $read_version

Zero rows updated means another writer got there first: the row is read again and ``change``
recomputed from what that writer left, up to ``retries`` more times, then :class:`VersionConflict`.
No lock is held between the read and the write, so nobody waits on anybody; under heavy contention
on one row a lock (:mod:`meshkit.coord`) serves better than many retries.

Each attempt needs to see the latest committed row. PostgreSQL's default isolation (READ
COMMITTED) gives that to every statement, even inside one transaction. MariaDB/MySQL's default
REPEATABLE READ does not: inside one transaction every read sees the first one's snapshot, so a
retry would read the same stale version again. On MySQL, run this on an autocommit connection (or at
READ COMMITTED). The statements run in the caller's connection as it is; nothing is committed here.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from meshkit.coord._sql import adapter, identifier
from meshkit.errors import VersionConflict


@dataclass(frozen=True, slots=True)
class Versioned:
    """What a versioned update wrote: the row as it is now, its new version, the conflicts met."""

    row: dict[str, Any]
    version: int
    conflicts: int


@dataclass(slots=True)
class ConflictStats:
    """Running counts over many updates (pass one as ``stats=``; :data:`STATS` counts every call)."""

    updates: int = 0
    conflicts: int = 0
    #: Updates that gave up with VersionConflict.
    exhausted: int = 0


#: Every versioned update of this process.
STATS = ConflictStats()

Change = Callable[[dict[str, Any]], Mapping[str, Any] | Awaitable[Mapping[str, Any]]]


async def versioned_update(
    conn: Any,
    table: str,
    key_column: str,
    key: Any,
    change: Change,
    version_column: str = "version",
    retries: int = 5,
    *,
    stats: ConflictStats | None = None,
) -> Versioned:
    """Apply ``change`` to the row ``key_column = key`` of ``table`` (see the module docstring).

    ``change(row)`` gets the row as a dict and returns the columns to set (it may be a coroutine
    function; it may be called up to ``retries + 1`` times, so it should have no side effect).
    LookupError if there is no such row; :class:`VersionConflict` after ``retries`` retries.
    ``conn``: an asyncpg connection or pool, an asyncmy/aiomysql connection, or a SQLAlchemy
    ``AsyncConnection``."""
    if retries < 0:
        raise ValueError(f"retries must be 0 or more, got {retries!r}")
    db = adapter(conn)
    t = db.quote(identifier(table, "table", qualified=True))
    k = db.quote(identifier(key_column, "key column"))
    v = db.quote(identifier(version_column, "version column"))
    conflicts = 0
    counters = (STATS,) if stats is None else (STATS, stats)
    for _ in range(retries + 1):
        row = await db.fetchrow(f"SELECT * FROM {t} WHERE {k} = ?", [key])
        if row is None:
            raise LookupError(f"no row {key_column} = {key!r} in {table}")
        read_version = row[version_column]
        new = change(dict(row))
        values = dict(await new if inspect.isawaitable(new) else new)
        columns = [identifier(column, "column") for column in values]
        if version_column in columns or key_column in columns:
            raise ValueError(f"change must not set the key column {key_column!r} or the version {version_column!r}")
        sets = "".join(f"{db.quote(column)} = ?, " for column in columns)
        written = await db.execute(
            f"UPDATE {t} SET {sets}{v} = {v} + 1 WHERE {k} = ? AND {v} = ?", [*values.values(), key, read_version]
        )
        if written:
            for counter in counters:
                counter.updates += 1
                counter.conflicts += conflicts
            return Versioned({**row, **values, version_column: read_version + 1}, read_version + 1, conflicts)
        conflicts += 1
    for counter in counters:
        counter.conflicts += conflicts
        counter.exhausted += 1
    raise VersionConflict(
        f"{table} row {key_column} = {key!r} changed under every one of {retries + 1} attempts; try again later"
    )
