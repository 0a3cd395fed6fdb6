"""fenced_update and versioned_update on every connection kind they take (asyncpg, asyncmy,
SQLAlchemy on both engines), against the real MariaDB and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from meshkit.coord.fencing import fenced_update
from meshkit.coord.optimistic import ConflictStats, VersionConflict, versioned_update
from meshkit.errors import StatusCode
from tests.coord.sql_engines import Kind


@dataclass
class Db:
    table: str
    #: A new connection of the kind under test (each concurrent writer gets its own).
    connect: Callable[[], Awaitable[Any]]
    close: Callable[[Any], Awaitable[None]]
    #: Run SQL on the admin connection ("?" placeholders).
    admin: Callable[..., Awaitable[list[tuple[Any, ...]]]]


KINDS = list(Kind.KINDS)


@pytest.fixture(params=KINDS)
async def db(request: pytest.FixtureRequest) -> AsyncIterator[Db]:
    kind = Kind(request.param)
    await kind.open()
    table = f"helper_{uuid.uuid4().hex[:10]}"
    await kind.admin(
        f"CREATE TABLE {table} (id INT PRIMARY KEY, qty INT NOT NULL, note VARCHAR(64) NULL, "
        "fence BIGINT NULL, version INT NOT NULL DEFAULT 0)"
    )
    await kind.admin(f"INSERT INTO {table} (id, qty, version) VALUES (1, 0, 0)")
    yield Db(table, kind.connect, kind.close, kind.admin)
    await kind.admin(f"DROP TABLE {table}")
    await kind.aclose()


async def test_a_stale_token_is_refused_while_the_current_holder_keeps_writing(db: Db) -> None:
    conn = await db.connect()
    try:
        assert await fenced_update(conn, db.table, "id", 1, 7, {"qty": 1, "note": "first"})
        assert await fenced_update(conn, db.table, "id", 1, 9, {"qty": 2, "note": "second"})
        assert not await fenced_update(conn, db.table, "id", 1, 7, {"qty": 3, "note": "stale"})
        assert await fenced_update(conn, db.table, "id", 1, 9, {"qty": 4, "note": "second"})
        assert await fenced_update(conn, db.table, "id", 1, 9, {"qty": 4, "note": "second"}), "same values again"
        assert not await fenced_update(conn, db.table, "id", 2, 10, {"qty": 5}), "no such row"
    finally:
        await db.close(conn)
    assert await db.admin(f"SELECT qty, note, fence FROM {db.table} WHERE id = ?", 1) == [(4, "second", 9)]


@pytest.mark.parametrize(
    ("table", "key_column", "values"),
    [
        ("t; DROP TABLE x", "id", {"qty": 1}),
        ("", "id = 1 OR 1", {"qty": 1}),
        ("", "id", {"qty = qty + 1, note": 1}),
        ("", "id", {"fence": 1}),
        ("", "id", {"version": 1}),
        ("a.b.c", "id", {"qty": 1}),
    ],
)
async def test_identifiers_that_are_not_plain_names_are_refused(
    db: Db, table: str, key_column: str, values: dict[str, Any]
) -> None:
    table = table or db.table  # "": the real table, with a bad column
    conn = await db.connect()
    try:
        if "version" not in values:
            with pytest.raises(ValueError):
                await fenced_update(conn, table, key_column, 1, 1, values)
        if "fence" not in values:
            with pytest.raises(ValueError):
                await versioned_update(conn, table, key_column, 1, lambda row: values)
    finally:
        await db.close(conn)
    assert await db.admin(f"SELECT qty, fence, version FROM {db.table} WHERE id = ?", 1) == [(0, None, 0)]


async def test_concurrent_versioned_increments_all_land_and_conflicts_are_counted(db: Db) -> None:
    writers, each = 6, 5
    stats = ConflictStats()
    conns = [await db.connect() for _ in range(writers)]
    gate = asyncio.Event()

    async def increments(conn: Any) -> list[int]:
        await gate.wait()
        versions = []
        for _ in range(each):
            done = await versioned_update(
                conn, db.table, "id", 1, lambda row: {"qty": row["qty"] + 1}, retries=100, stats=stats
            )
            versions.append(done.version)
            await asyncio.sleep(0)
        return versions

    try:
        tasks = [asyncio.create_task(increments(conn)) for conn in conns]
        gate.set()
        results = await asyncio.gather(*tasks)
    finally:
        for conn in conns:
            await db.close(conn)
    total = writers * each
    assert await db.admin(f"SELECT qty, version FROM {db.table} WHERE id = ?", 1) == [(total, total)]
    versions = sorted(v for vs in results for v in vs)
    assert versions == list(range(1, total + 1)), "each update wrote one version of its own"
    assert stats.updates == total
    assert stats.conflicts > 0, "concurrent writers of one row met no conflict"


async def test_a_row_that_keeps_changing_ends_with_version_conflict(db: Db) -> None:
    conn = await db.connect()
    stats = ConflictStats()
    calls = 0

    async def meddle(row: dict[str, Any]) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        await db.admin(f"UPDATE {db.table} SET version = version + 1 WHERE id = ?", 1)  # someone else wins
        return {"qty": row["qty"] + 1}

    try:
        with pytest.raises(VersionConflict) as raised:
            await versioned_update(conn, db.table, "id", 1, meddle, retries=2, stats=stats)
    finally:
        await db.close(conn)
    assert raised.value.code == StatusCode.ABORTED
    assert calls == 3 and stats.conflicts == 3 and stats.exhausted == 1 and stats.updates == 0
    assert await db.admin(f"SELECT qty FROM {db.table} WHERE id = ?", 1) == [(0,)]


async def test_a_missing_row_is_a_lookup_error(db: Db) -> None:
    conn = await db.connect()
    try:
        with pytest.raises(LookupError):
            await versioned_update(conn, db.table, "id", 404, lambda row: {"qty": 1})
    finally:
        await db.close(conn)
