"""The participant's barrier (tx/barrier.py) on every connection kind it takes (asyncpg,
asyncmy, SQLAlchemy on PostgreSQL and on MariaDB), against the real engines: duplicates run
once, a cancel before its try is an empty success, a try after its cancel does nothing, a
failed change leaves no barrier row, and concurrent try/cancel pairs never leave money behind."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from meshkit import Client, Server, Service, rpc
from meshkit.tx import BranchCall, barrier, create_barrier_table
from tests.coord.sql_engines import Kind

KINDS = list(Kind.KINDS)


@dataclass
class Db:
    kind: str
    table: str
    barrier_table: str
    connect: Callable[[], Awaitable[Any]]
    close: Callable[[Any], Awaitable[None]]
    admin: Callable[..., Awaitable[list[tuple[Any, ...]]]]

    def sql(self, text: str) -> str:
        """``text`` with ``?`` placeholders in the kind's style (SQLAlchemy: text() with :p0…)."""
        if self.kind == "asyncpg":
            for i in range(text.count("?")):
                text = text.replace("?", f"${i + 1}", 1)
        elif self.kind == "asyncmy":
            text = text.replace("?", "%s")
        else:
            for i in range(text.count("?")):
                text = text.replace("?", f":p{i}", 1)
        return text

    async def run(self, conn: Any, text: str, *args: Any) -> None:
        if self.kind == "asyncpg":
            await conn.execute(self.sql(text), *args)
        elif self.kind == "asyncmy":
            async with conn.cursor() as cur:
                await cur.execute(self.sql(text), args)
        else:
            from sqlalchemy import text as sql_text

            await conn.execute(sql_text(self.sql(text)), {f"p{i}": a for i, a in enumerate(args)})

    async def account(self) -> tuple[int, int]:
        [(balance, frozen)] = await self.admin(f"SELECT balance, frozen FROM {self.table} WHERE id = 1")
        return int(balance), int(frozen)


@pytest.fixture(params=KINDS)
async def db(request: pytest.FixtureRequest) -> AsyncIterator[Db]:
    kind = Kind(request.param, autocommit=False, pool_size=30)  # SQLAlchemy's begin() must begin
    await kind.open()
    suffix = uuid.uuid4().hex[:10]
    table, barrier_table = f"acct_{suffix}", f"barrier_{suffix}"
    await kind.admin(f"CREATE TABLE {table} (id INT PRIMARY KEY, balance INT NOT NULL, frozen INT NOT NULL)")
    await kind.admin(f"INSERT INTO {table} VALUES (1, 100, 0)")
    made = Db(kind.kind, table, barrier_table, kind.connect, kind.close, kind.admin)
    conn = await kind.connect()
    await create_barrier_table(conn, barrier_table)
    if kind.kind.startswith("sqlalchemy"):
        await conn.commit()
    await kind.close(conn)
    yield made
    await kind.admin(f"DROP TABLE {table}")
    await kind.admin(f"DROP TABLE {barrier_table}")
    await kind.aclose()


def ops(db: Db, amount: int = 10) -> dict[str, Callable[[Any], Awaitable[None]]]:
    t = db.table
    return {
        "try": lambda c: db.run(
            c, f"UPDATE {t} SET balance = balance - ?, frozen = frozen + ? WHERE id = 1", amount, amount
        ),
        "confirm": lambda c: db.run(c, f"UPDATE {t} SET frozen = frozen - ? WHERE id = 1", amount),
        "cancel": lambda c: db.run(
            c, f"UPDATE {t} SET balance = balance + ?, frozen = frozen - ? WHERE id = 1", amount, amount
        ),
    }


async def call(db: Db, gid: str, op: str, conn: Any | None = None) -> Any:
    own = conn is None
    conn = conn or await db.connect()
    try:
        return await barrier(conn, ops(db)[op], call=BranchCall(gid, "pay", op), table=db.barrier_table)
    finally:
        if own:
            await db.close(conn)


async def test_a_duplicate_try_and_confirm_run_once(db: Db) -> None:
    for op in ("try", "try", "confirm", "confirm"):
        await call(db, "g1", op)
    assert await db.account() == (90, 0)


async def test_a_cancel_before_its_try_is_an_empty_success_and_the_late_try_does_nothing(db: Db) -> None:
    await call(db, "g2", "cancel")
    assert await db.account() == (100, 0)  # nothing to undo: nothing was done
    await call(db, "g2", "try")  # held up in the network, arrives after the cancel
    assert await db.account() == (100, 0), "a hanging try must not freeze money no cancel will release"


async def test_try_then_cancel_twice_restores_once(db: Db) -> None:
    await call(db, "g3", "try")
    await call(db, "g3", "cancel")
    await call(db, "g3", "cancel")
    assert await db.account() == (100, 0)


async def test_a_change_that_fails_leaves_no_barrier_row_so_a_retry_runs_it(db: Db) -> None:
    conn = await db.connect()
    try:

        async def broken(c: Any) -> None:
            await ops(db)["try"](c)
            raise RuntimeError("the participant's own failure")

        with pytest.raises(RuntimeError):
            await barrier(conn, broken, call=BranchCall("g4", "pay", "try"), table=db.barrier_table)
    finally:
        await db.close(conn)
    assert await db.account() == (100, 0)
    await call(db, "g4", "try")
    assert await db.account() == (90, 10)


async def test_concurrent_try_and_cancel_pairs_never_leave_money_frozen(db: Db) -> None:
    pairs = 12
    conns = [await db.connect() for _ in range(2 * pairs)]
    try:
        await asyncio.gather(
            *(
                call(db, f"race-{i}", op, conns[2 * i + j])
                for i in range(pairs)
                for j, op in enumerate(("cancel", "try"))
            )
        )
    finally:
        for conn in conns:
            await db.close(conn)
    assert await db.account() == (100, 0), "every pair ends with the money back: mishandled 0"


class Payments(Service, name="payments"):
    def __init__(self, db: Db) -> None:
        self.db = db

    @rpc
    async def try_debit(self) -> bool:
        conn = await self.db.connect()
        try:
            await barrier(conn, ops(self.db)["try"], table=self.db.barrier_table)  # the call from metadata
        finally:
            await self.db.close(conn)
        return True


@pytest.mark.parametrize("db", ["asyncpg"], indirect=True)  # the metadata path is the same for every kind
async def test_inside_an_rpc_method_the_branch_call_comes_from_the_metadata(db: Db) -> None:
    metadata = {"tx-gid": "g5", "tx-branch": "pay", "tx-op": "try"}
    async with (
        Server([Payments(db)], middleware=[]) as server,
        Client(target=server.address, metadata=metadata) as client,
    ):
        assert await client.call("payments", "try_debit") is True
        assert await client.call("payments", "try_debit") is True  # a retry: runs nothing
    assert await db.account() == (90, 10)
    with pytest.raises(LookupError, match="needs the branch call"):
        BranchCall.current()
