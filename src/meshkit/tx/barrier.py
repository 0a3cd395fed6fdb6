"""The sub-transaction barrier (DTM's design): a participant's business change and a row in its
own barrier table, in one local transaction, so that what the network does to a coordinator's
calls does no harm:

- **a duplicate** (a retry of a call that did run) finds its row and does nothing;
- **an empty compensation** (a cancel or compensate whose try or action never arrived) writes the
  row its try *would* have written, and succeeds without doing anything;
- **a hanging try** (a try that arrives after its cancel, held up in the network) finds the row
  its cancel wrote in its place, and does nothing.

The table has one row per (gid, branch, op, barrier id); the primary key decides, inside the
database: of two concurrent inserts of one key, the second waits for the first's transaction and
then inserts nothing. Works on asyncpg connections and pools, asyncmy/aiomysql connections and
SQLAlchemy ``AsyncConnection``\\ s (not in autocommit: the barrier row and the change must commit
together), on PostgreSQL and MariaDB/MySQL.

    from meshkit.tx import BranchCall, barrier
    await barrier(conn, lambda c: c.execute("UPDATE account SET balance = balance - $1 WHERE id = $2", 5, "ann"),
                  call=BranchCall(gid, "pay", "try"))

Inside a branch's ``@rpc`` method the call comes from the request's metadata (``tx-gid``,
``tx-branch``, ``tx-op``), which the coordinator sends.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from meshkit.coord._sql import Adapter, adapter, identifier
from meshkit.rpc.context import current_context

#: The metadata keys a coordinator sends with a branch call.
GID, BRANCH, OP = "tx-gid", "tx-branch", "tx-op"
DEFAULT_TABLE = "meshkit_barrier"
#: The op a backward op stands in for: an empty compensation writes its row.
ORIGIN = {"cancel": "try", "compensate": "action"}
OPS = ("try", "confirm", "cancel", "action", "compensate")


@dataclass(frozen=True, slots=True)
class BranchCall:
    """Which call of which branch of which transaction this is."""

    gid: str
    branch: str
    op: str

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise ValueError(f"a branch op is one of {', '.join(OPS)}, got {self.op!r}")
        for name, value in (("gid", self.gid), ("branch", self.branch)):
            if not isinstance(value, str) or not 0 < len(value) <= 128:
                raise ValueError(f"a branch call's {name} is 1 to 128 characters, got {value!r}")

    @classmethod
    def current(cls) -> BranchCall:
        """The branch call being handled (from the request's metadata)."""
        ctx = current_context()
        metadata = ctx.metadata if ctx is not None else {}
        gid, branch, op = metadata.get(GID), metadata.get(BRANCH), metadata.get(OP)
        if not (isinstance(gid, str) and isinstance(branch, str) and isinstance(op, str)):
            raise LookupError(
                "barrier() needs the branch call: pass call=BranchCall(gid, branch, op), or call it in an "
                f"@rpc method a transaction coordinator calls (its metadata carries {GID}, {BRANCH}, {OP})"
            )
        return cls(gid, branch, op)


def create_table_sql(mysql: bool, table: str = DEFAULT_TABLE) -> str:
    """The barrier table's DDL for PostgreSQL (``mysql=False``) or MariaDB/MySQL."""
    name = identifier(table, "table", qualified=True)
    return (
        f"CREATE TABLE IF NOT EXISTS {name} (gid VARCHAR(128) NOT NULL, branch_id VARCHAR(128) NOT NULL, "
        "op VARCHAR(16) NOT NULL, barrier_id INT NOT NULL, reason VARCHAR(16) NOT NULL, "
        "created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, PRIMARY KEY (gid, branch_id, op, barrier_id))"
    )


async def create_barrier_table(conn: Any, table: str = DEFAULT_TABLE) -> None:
    """Create the barrier table if it does not exist (or create it with :func:`create_table_sql`
    in a migration)."""
    db = adapter(conn)
    ddl = create_table_sql(db.mysql, table)
    if type(conn).__module__.startswith("asyncpg"):
        await conn.execute(ddl)  # its status ("CREATE TABLE") is no row count
    else:
        await db.execute(ddl, [])


async def barrier(
    conn: Any,
    work: Callable[[Any], Awaitable[Any]],
    *,
    call: BranchCall | None = None,
    barrier_id: int = 1,
    table: str = DEFAULT_TABLE,
) -> Any:
    """Run ``work(conn)`` and the barrier insert in one local transaction, begun and committed
    here; returns what ``work`` returned, or None when the barrier says not to run it (a
    duplicate, an empty compensation, a try after its cancel). An exception from ``work`` rolls
    both back, so a retry runs it again. ``barrier_id``: the barrier's number within the branch
    call, for a method that guards more than one local transaction."""
    call = call or BranchCall.current()
    name = identifier(table, "table", qualified=True)
    pool = type(conn).__module__.startswith("asyncpg") and hasattr(conn, "acquire") and not hasattr(conn, "transaction")
    if pool:
        async with conn.acquire() as held:
            return await _guarded(adapter(held), work, call, barrier_id, name)
    return await _guarded(adapter(conn), work, call, barrier_id, name)


async def _guarded(db: Adapter, work: Callable[[Any], Awaitable[Any]], call: BranchCall, bid: int, table: str) -> Any:
    insert = (
        f"INSERT IGNORE INTO {db.quote(table)} (gid, branch_id, op, barrier_id, reason) VALUES (?, ?, ?, ?, ?)"
        if db.mysql
        else f"INSERT INTO {db.quote(table)} (gid, branch_id, op, barrier_id, reason) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT DO NOTHING"
    )
    async with _transaction(db):
        origin = ORIGIN.get(call.op)
        stood_in = 0
        if origin is not None:  # a backward op first writes its forward op's row, if none is there
            stood_in = await db.execute(insert, [call.gid, call.branch, origin, bid, call.op])
        fresh = await db.execute(insert, [call.gid, call.branch, call.op, bid, call.op])
        if stood_in or not fresh:
            return None  # an empty compensation (its forward op never ran), or a duplicate
        return await work(db.conn)


@contextlib.asynccontextmanager
async def _transaction(db: Adapter) -> AsyncIterator[None]:
    conn = db.conn
    module = type(conn).__module__.split(".", 1)[0]
    if module == "asyncpg":
        async with conn.transaction():
            yield
    elif module == "sqlalchemy":
        async with conn.begin_nested() if conn.in_transaction() else conn.begin():
            yield
    else:  # asyncmy, aiomysql
        await conn.begin()
        try:
            yield
        except BaseException:
            await conn.rollback()
            raise
        await conn.commit()
