"""Fencing: a write that the resource itself refuses when it comes from a stale lock holder.

A lock's lease can end without its holder knowing (a GC pause, a SIGSTOP, a partition longer than
the TTL); a successor is granted the lock, with a larger token (see
:mod:`meshkit.coord.backend`). The guarded row remembers the token of the last write in its fence
column, and :func:`fenced_update` writes only when the holder's token is at least that one::

    UPDATE stock SET qty = $1, fence = $2 WHERE sku = $3 AND (fence IS NULL OR fence <= $2)

``<=``, not ``<``: one holder writes many times under one token; a stale holder's token is strictly
lower than its successor's, so once the successor has written, every write of the stale one fails.
A NULL fence is a row no holder has written yet. The statement runs in the caller's connection as it
is: inside the caller's transaction when one is open (commit it yourself), else it commits at once.

Table and column names are checked (plain identifiers, ``schema.table`` allowed) and quoted, never
interpolated as given; values and the token are parameters.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from meshkit.coord._sql import adapter, identifier


async def fenced_update(
    conn: Any,
    table: str,
    key_column: str,
    key: Any,
    token: int,
    values: Mapping[str, Any],
    fence_column: str = "fence",
) -> bool:
    """Write ``values`` to the row ``key_column = key`` of ``table`` if ``token`` is not stale;
    True if the row was written, False if it holds a larger token (or there is no such row).

    ``conn``: an asyncpg connection or pool, an asyncmy/aiomysql connection, or a SQLAlchemy
    ``AsyncConnection`` (PostgreSQL or MariaDB/MySQL)."""
    db = adapter(conn)
    t = db.quote(identifier(table, "table", qualified=True))
    k = db.quote(identifier(key_column, "key column"))
    f = db.quote(identifier(fence_column, "fence column"))
    columns = [identifier(column, "column") for column in values]
    if fence_column in columns or key_column in columns:
        raise ValueError(f"values must not set the key column {key_column!r} or the fence column {fence_column!r}")
    sets = "".join(f"{db.quote(column)} = ?, " for column in columns)
    written = await db.execute(
        f"UPDATE {t} SET {sets}{f} = ? WHERE {k} = ? AND ({f} IS NULL OR {f} <= ?)",
        [*values.values(), token, key, token],
    )
    if written == 0 and db.counts_changed_only:
        # MySQL counted no *changed* row: the same holder writing the same values again. A locking
        # read (the latest committed row, not a snapshot) says whether the row did match.
        matched = await db.fetchrow(
            f"SELECT 1 AS matched FROM {t} WHERE {k} = ? AND ({f} IS NULL OR {f} <= ?) FOR UPDATE", [key, token]
        )
        written = 0 if matched is None else 1
    return written > 0
