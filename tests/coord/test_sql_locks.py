"""mysql:// (row lock and GET_LOCK) and postgresql:// backends, on the real engines: the lease is a
connection, so killing it on the server ends the lock, and a waiter leaves nothing behind."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from meshkit.coord.backend import Grant, LockBackend
from meshkit.coord.mysql import MySQLLocks, open_mysql
from meshkit.coord.postgres import PostgresLocks, open_postgres
from meshkit.errors import EngineUnavailable, LockTimeout, StatusCode
from meshkit.schemes import BackendURL
from tests.coord.contract import eventually
from tests.coord.sql_engines import mariadb, mariadb_leftovers, my_rows, postgres, postgres_leftovers

LONG = 30.0


@dataclass
class Engine:
    url: str
    admin: Any
    #: End a grant's connection on the server (KILL, pg_terminate_backend).
    kill: Callable[[Grant], Awaitable[None]]
    #: What the engine has of a name besides the grant given (if any).
    leftovers: Callable[[str, Grant | None], Awaitable[list[str]]]

    def open(self, url: str | None = None) -> LockBackend:
        parsed = BackendURL.parse(url or self.url)
        return open_mysql(parsed) if parsed.scheme == "mysql" else open_postgres(parsed)


@pytest.fixture(params=["mysql-row", "mysql-get_lock", "postgresql"])
async def engine(request: pytest.FixtureRequest) -> AsyncIterator[Engine]:
    tag = uuid.uuid4().hex[:10]
    if request.param.startswith("mysql"):
        admin = await mariadb()
        mode = request.param.split("-", 1)[1]

        async def kill_my(grant: Grant) -> None:
            await my_rows(admin, f"KILL CONNECTION {int(grant.handle.thread)}")

        yield Engine(
            f"mysql://root@127.0.0.1:3306/test?mode={mode}&table=locks_{tag}",
            admin,
            kill_my,
            lambda name, grant: mariadb_leftovers(admin, name, grant and grant.handle.thread),
        )
        await my_rows(admin, f"DROP TABLE IF EXISTS locks_{tag}, locks_{tag}_fences")
        admin.close()
    else:
        admin = await postgres()

        async def kill_pg(grant: Grant) -> None:
            await admin.execute("SELECT pg_terminate_backend($1)", grant.handle.pid)

        yield Engine(
            f"postgresql://127.0.0.1:5432/test?sequence=fence_{tag}",
            admin,
            kill_pg,
            lambda name, grant: postgres_leftovers(admin, name, grant and grant.handle.pid),
        )
        await admin.execute(f"DROP SEQUENCE IF EXISTS fence_{tag}")
        await admin.close()


@pytest.fixture
async def two(engine: Engine) -> AsyncIterator[tuple[LockBackend, LockBackend]]:
    a, b = engine.open(), engine.open()
    yield a, b
    await a.close()
    await b.close()


@pytest.fixture
def name() -> str:
    return f"sql-{uuid.uuid4().hex}"


async def test_a_held_name_is_refused_to_another_backend_at_once_with_wait_0(
    engine: Engine, two: tuple[LockBackend, LockBackend], name: str
) -> None:
    a, b = two
    grant = await a.acquire(name, "a", LONG, 0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(LockTimeout):
        await b.acquire(name, "b", LONG, 0)
    assert loop.time() - started < 0.5
    assert await a.release(grant)
    again = await b.acquire(name, "b", LONG, 0)
    assert again.token > grant.token
    assert await b.release(again)
    await eventually(lambda: _nothing(engine, name), what="nothing left after release")


async def test_tokens_strictly_increase_across_holders(two: tuple[LockBackend, LockBackend], name: str) -> None:
    tokens = []
    for backend in itertools.islice(itertools.cycle(two), 8):
        grant = await backend.acquire(name, "x", LONG, 5.0)
        tokens.append(grant.token)
        assert await backend.release(grant)
    assert all(x < y for x, y in itertools.pairwise(tokens)), tokens


async def test_a_finite_wait_ends_with_lock_timeout_after_the_wait(
    engine: Engine, two: tuple[LockBackend, LockBackend], name: str
) -> None:
    a, b = two
    grant = await a.acquire(name, "a", LONG, 0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(LockTimeout):
        await b.acquire(name, "b", LONG, 0.6)
    took = loop.time() - started
    assert 0.55 <= took < 2.0, took
    await eventually(lambda: _nothing(engine, name, grant), what="the timed-out waiter gone")
    assert await a.release(grant)


async def test_a_release_wakes_the_waiter_at_once(two: tuple[LockBackend, LockBackend], name: str) -> None:
    a, b = two
    grant = await a.acquire(name, "a", LONG, 0)
    waiter = asyncio.create_task(b.acquire(name, "b", LONG, 20.0))
    await asyncio.sleep(0.2)  # the waiter is queued on the server (not needed for correctness)
    assert not waiter.done()
    loop = asyncio.get_running_loop()
    released = loop.time()
    assert await a.release(grant)
    second = await waiter
    assert loop.time() - released < 0.5
    assert second.token > grant.token
    assert await b.release(second)


async def test_a_holder_whose_connection_is_killed_loses_the_lock_to_the_waiter(
    engine: Engine, two: tuple[LockBackend, LockBackend], name: str
) -> None:
    a, b = two
    grant = await a.acquire(name, "a", LONG, 0)
    waiter = asyncio.create_task(b.acquire(name, "b", LONG, 20.0))
    await asyncio.sleep(0.2)  # the waiter is queued (not needed for correctness)
    await engine.kill(grant)
    second = await asyncio.wait_for(waiter, 5.0)
    assert second.token > grant.token
    assert not await a.renew(grant), "renew after the connection died must say the lease is gone"
    assert not await a.release(grant)
    assert await b.release(second)


async def test_a_holder_that_stops_renewing_loses_the_lock_after_its_ttl(
    engine: Engine, two: tuple[LockBackend, LockBackend], name: str
) -> None:
    """What a SIGSTOPped holder looks like to the server: a connection idle past the TTL."""
    a, b = two
    grant = await a.acquire(name, "a", 1.0, 0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    second = await b.acquire(name, "b", LONG, 10.0)
    took = loop.time() - started
    assert 0.9 <= took < 3.5, f"the lease of a silent holder ended after {took:.2f}s, ttl 1s"
    assert second.token > grant.token
    assert not await a.renew(grant)
    assert await b.release(second)


async def test_renewing_keeps_the_lease_past_its_ttl(two: tuple[LockBackend, LockBackend], name: str) -> None:
    a, b = two
    grant = await a.acquire(name, "a", 1.0, 0)
    loop = asyncio.get_running_loop()
    until = loop.time() + 2.5
    while loop.time() < until:
        assert await a.renew(grant)
        with pytest.raises(LockTimeout):
            await b.acquire(name, "b", LONG, 0)
        await asyncio.sleep(0.3)  # the watchdog's cadence (ttl/3)
    assert await a.release(grant)


async def test_cancelled_waiters_leave_no_lock_request_connection_or_lock(
    engine: Engine, two: tuple[LockBackend, LockBackend], name: str
) -> None:
    a, b = two
    grant = await a.acquire(name, "a", LONG, 0)
    waiters = [asyncio.create_task(b.acquire(name, f"w{i}", LONG, wait)) for i, wait in enumerate((None, 30.0))]
    await eventually(lambda: _count(engine, name, 2, grant), what="both waiters queued on the server")
    for waiter in waiters:
        waiter.cancel()
    for waiter in waiters:
        with pytest.raises(asyncio.CancelledError):
            await waiter
    await eventually(lambda: _nothing(engine, name, grant), what="the cancelled waiters gone from the server")
    assert await a.release(grant)
    # Had a dead waiter been granted the lock on release, this would time out.
    third = await a.acquire(name, "c", LONG, 5.0)
    assert await a.release(third)
    await eventually(lambda: _nothing(engine, name), what="nothing left")


@pytest.mark.parametrize(
    "url",
    [
        "mysql://root@127.0.0.1:1/test?connect_timeout=2",
        "mysql://nobody:wrong@127.0.0.1:3306/test",
        "postgresql://127.0.0.1:1/test?connect_timeout=2",
        "postgresql://nobody:wrong@127.0.0.1:5432/test",
    ],
)
async def test_an_unreachable_engine_or_bad_credentials_raise_engine_unavailable(url: str) -> None:
    parsed = BackendURL.parse(url)
    backend: MySQLLocks | PostgresLocks = open_mysql(parsed) if parsed.scheme == "mysql" else open_postgres(parsed)
    try:
        with pytest.raises(EngineUnavailable) as raised:
            await backend.acquire(f"bad-{uuid.uuid4().hex}", "x", LONG, 0)
    finally:
        await backend.close()
    if "nobody" in url:
        assert raised.value.code == StatusCode.UNAUTHENTICATED
    else:
        assert raised.value.code == StatusCode.UNAVAILABLE
        assert "127.0.0.1:1" in raised.value.message and "scripts/engines.sh" in raised.value.message


async def _nothing(engine: Engine, name: str, besides: Grant | None = None) -> bool:
    return not await engine.leftovers(name, besides)


async def _count(engine: Engine, name: str, n: int, besides: Grant) -> bool:
    return len(await engine.leftovers(name, besides)) >= n


async def test_a_backend_whose_side_connection_ended_reconnects_when_it_next_needs_it(
    engine: Engine, two: tuple[LockBackend, LockBackend], name: str
) -> None:
    """What an engine restart leaves a backend: a dead side connection (tokens, ending waiters).
    The next use opens a new one rather than failing, and a refused waiter still leaves nothing."""
    a, _ = two
    first = await a.acquire(name, "a", LONG, 0)
    side: Any = a._side  # type: ignore[attr-defined]
    if isinstance(a, MySQLLocks):
        await my_rows(engine.admin, f"KILL CONNECTION {int(side.thread_id())}")
    else:
        await engine.admin.execute("SELECT pg_terminate_backend($1)", side.get_server_pid())
    with pytest.raises(LockTimeout):
        await a.acquire(name, "again", LONG, 0)  # its connection is ended through the side one
    assert a._side is not None and a._side is not side  # type: ignore[attr-defined]
    await eventually(lambda: _nothing(engine, name, first), what="the refused waiter gone")
    assert await a.release(first)
    second = await a.acquire(name, "a", LONG, 0)
    assert second.token > first.token
    assert await a.release(second)


async def test_racing_first_acquires_of_a_new_name_give_one_grant_and_timeouts(engine: Engine, name: str) -> None:
    """The first grants of a name race to make its row (mysql row mode): one wins, the others are
    refused as for any held lock, none fails."""
    backends = [engine.open() for _ in range(8)]
    try:
        results = await asyncio.gather(
            *(b.acquire(name, str(i), LONG, 0) for i, b in enumerate(backends)), return_exceptions=True
        )
        grants = [r for r in results if isinstance(r, Grant)]
        assert len(grants) == 1, results
        assert all(isinstance(r, LockTimeout) for r in results if not isinstance(r, Grant)), results
        winner = backends[results.index(grants[0])]
        assert await winner.release(grants[0])
    finally:
        for b in backends:
            await b.close()
    await eventually(lambda: _nothing(engine, name), what="nothing left")
