"""One SQL statement on whatever connection the caller has: asyncpg, asyncmy/aiomysql, SQLAlchemy.

The fencing and optimistic-concurrency helpers write their statements once, with ``?`` for each
parameter and identifiers already checked by :func:`identifier` and quoted by :meth:`Adapter.quote`;
the adapter renders the parameters in its driver's style (``$1``, ``%s``, ``:p0``). No driver is
imported here: a connection is recognised by the module its type comes from, and SQLAlchemy's
``text`` is imported only for a SQLAlchemy connection.

Nothing here begins or commits a transaction: a statement runs in whatever the caller's connection
is in (an autocommit connection commits it at once; inside the caller's transaction, the caller
commits it together with the rest of its work).
"""

from __future__ import annotations

import re
from typing import Any

#: A table or column name: letters, digits and underscores, not starting with a digit, at most 63
#: (PostgreSQL's limit). A table may be ``schema.table``. Nothing else is ever put into SQL text.
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


def identifier(name: Any, what: str, *, qualified: bool = False) -> str:
    """``name`` if it is a safe SQL identifier (``schema.table`` when ``qualified``), else ValueError."""
    parts = name.split(".") if isinstance(name, str) else [""]
    if not (len(parts) <= (2 if qualified else 1) and all(_NAME.fullmatch(part) for part in parts)):
        raise ValueError(f"{what} must be a plain SQL identifier ({_NAME.pattern}), got {name!r}")
    return str(name)


class Adapter:
    """A connection of one driver, as the helpers need it."""

    #: MySQL reports rows *changed*, not rows matched, unless the connection asked otherwise
    #: (SQLAlchemy's dialects do): an UPDATE writing the values a row already has counts 0.
    counts_changed_only = False

    def __init__(self, conn: Any, mysql: bool) -> None:
        self.conn = conn
        self.mysql = mysql

    def quote(self, name: str) -> str:
        mark = "`" if self.mysql else '"'
        return ".".join(f"{mark}{part}{mark}" for part in name.split("."))

    def render(self, sql: str) -> str:
        pieces = sql.split("?")
        out = [pieces[0]]
        for i, piece in enumerate(pieces[1:]):
            out.append(self.placeholder(i) + piece)
        return "".join(out)

    def placeholder(self, i: int) -> str:
        raise NotImplementedError

    async def execute(self, sql: str, args: list[Any]) -> int:
        """Run ``sql``; the number of rows it affected."""
        raise NotImplementedError

    async def fetchrow(self, sql: str, args: list[Any]) -> dict[str, Any] | None:
        raise NotImplementedError


class _Asyncpg(Adapter):
    def placeholder(self, i: int) -> str:
        return f"${i + 1}"

    async def execute(self, sql: str, args: list[Any]) -> int:
        status: str = await self.conn.execute(self.render(sql), *args)  # "UPDATE 1"
        return int(status.rsplit(" ", 1)[-1])

    async def fetchrow(self, sql: str, args: list[Any]) -> dict[str, Any] | None:
        row = await self.conn.fetchrow(self.render(sql), *args)
        return None if row is None else dict(row)


class _DBAPI(Adapter):
    """asyncmy and aiomysql: a cursor per statement."""

    counts_changed_only = True

    def placeholder(self, i: int) -> str:
        return "%s"

    async def execute(self, sql: str, args: list[Any]) -> int:
        async with self.conn.cursor() as cur:
            await cur.execute(self.render(sql), args)
            return int(cur.rowcount)

    async def fetchrow(self, sql: str, args: list[Any]) -> dict[str, Any] | None:
        async with self.conn.cursor() as cur:
            await cur.execute(self.render(sql), args)
            row = await cur.fetchone()
            if row is None:
                return None
            if isinstance(row, dict):
                return row
            return {column[0]: value for column, value in zip(cur.description, row, strict=True)}


class _SQLAlchemy(Adapter):
    def placeholder(self, i: int) -> str:
        return f":p{i}"

    def _statement(self, sql: str, args: list[Any]) -> tuple[Any, dict[str, Any]]:
        from sqlalchemy import text

        return text(self.render(sql)), {f"p{i}": value for i, value in enumerate(args)}

    async def execute(self, sql: str, args: list[Any]) -> int:
        result = await self.conn.execute(*self._statement(sql, args))
        return int(result.rowcount)

    async def fetchrow(self, sql: str, args: list[Any]) -> dict[str, Any] | None:
        result = await self.conn.execute(*self._statement(sql, args))
        row = result.mappings().first()
        return None if row is None else dict(row)


def adapter(conn: Any) -> Adapter:
    """The adapter for ``conn``: an asyncpg connection or pool, an asyncmy or aiomysql connection,
    or a SQLAlchemy ``AsyncConnection``; TypeError for anything else."""
    module = type(conn).__module__.split(".", 1)[0]
    if module == "asyncpg":
        return _Asyncpg(conn, mysql=False)
    if module in ("asyncmy", "aiomysql"):
        return _DBAPI(conn, mysql=True)
    if module == "sqlalchemy":
        return _SQLAlchemy(conn, mysql=conn.dialect.name in ("mysql", "mariadb"))
    raise TypeError(
        f"expected an asyncpg connection or pool, an asyncmy/aiomysql connection or a SQLAlchemy "
        f"AsyncConnection, got {type(conn).__module__}.{type(conn).__qualname__}"
    )
