"""The lock contract between real processes: racers, a SIGKILLed holder, a SIGSTOPped one.

A backend's test module subclasses :class:`ProcessContract` with its ``url`` and ``ttl`` (the
shortest lease the engine honours well). The shared resource is a MariaDB table (the engine the
issue's racers use), written through asyncmy by each child process:

- **racers**: 4 processes x 200 acquisitions of one name; each holder marks the row as held
  (only if nobody marked it), reads the counter, pauses, writes counter + 1, logs its token;
  afterwards: no double holder, no lost update, tokens strictly increasing in grant order;
- **SIGKILL**: the holder is killed; a waiter gets the lock within ttl + slack;
- **SIGSTOP**: the holder is paused past its TTL, another holder takes the lock and writes, then
  the first resumes and writes what it was about to: with the fencing helper that stale write is
  rejected; without it, it overwrites the second holder's (the lost update fencing prevents).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from meshkit.coord.locks import Locks
from meshkit.testing import ChildProcess, spawn
from tests.helpers import CHILD_PYTHONPATH

MARIADB = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": "", "db": "test"}

_CHILD_PRELUDE = """
import asyncio, json, sys
import asyncmy
from meshkit.coord import Locks
from meshkit.coord.fencing import fenced_update
DB = dict(host="127.0.0.1", port=3306, user="root", password="", db="test", autocommit=True)
"""

RACER = (
    _CHILD_PRELUDE
    + """
async def main(url, name, rounds, table):
    conn = await asyncmy.connect(**DB)
    doubles = 0
    async with Locks(url) as locks:
        for _ in range(int(rounds)):
            async with locks.lock(name, ttl=10.0, wait=120.0) as held:
                async with conn.cursor() as cur:
                    marked = await cur.execute(
                        f"UPDATE {table} SET holder = %s WHERE id = 1 AND holder IS NULL", (held.owner,))
                    doubles += marked != 1
                    await cur.execute(f"SELECT counter FROM {table} WHERE id = 1")
                    (value,) = await cur.fetchone()
                    await asyncio.sleep(0.001)
                    await cur.execute(f"UPDATE {table} SET counter = %s WHERE id = 1", (value + 1,))
                    await cur.execute(
                        f"INSERT INTO {table}_log (counter, token) VALUES (%s, %s)", (value + 1, held.token))
                    await cur.execute(f"UPDATE {table} SET holder = NULL WHERE id = 1 AND holder = %s", (held.owner,))
    conn.close()
    print(json.dumps({"doubles": doubles}), flush=True)

asyncio.run(main(*sys.argv[1:]))
"""
)

HOLDER = (
    _CHILD_PRELUDE
    + """
async def main(url, name, ttl, table, fenced):
    conn = await asyncmy.connect(**DB)
    locks = Locks(url)
    held = await locks.acquire(name, ttl=float(ttl), wait=60.0)
    print("HELD", held.token, flush=True)
    await asyncio.sleep(0.3)  # the test pauses the process in here (a GC pause, a stalled VM)
    value = f"holder-{held.token}"
    if fenced == "fenced":
        wrote = await fenced_update(conn, table, "id", 1, held.token, {"value": value})
    else:
        async with conn.cursor() as cur:
            wrote = await cur.execute(f"UPDATE {table} SET value = %s WHERE id = 1", (value,)) == 1
    print("WROTE", json.dumps(bool(wrote)), flush=True)
    await asyncio.sleep(3600)

asyncio.run(main(*sys.argv[1:]))
"""
)


async def _mariadb() -> Any:
    try:
        import asyncmy
    except ImportError:  # pragma: no cover - the test extra installs it
        pytest.fail("asyncmy is not installed: pip install -e '.[test]'")
    try:
        return await asyncmy.connect(**MARIADB, autocommit=True)
    except OSError as exc:
        pytest.fail(f"MariaDB is not running on 127.0.0.1:3306 ({exc}); start it with: service mariadb start")


async def _execute(conn: Any, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    async with conn.cursor() as cur:
        await cur.execute(sql, args)
        return list(await cur.fetchall() or [])


def _child(script: str, *args: str, ready: str | None = None) -> ChildProcess:
    return spawn(
        [sys.executable, "-c", script, *args],
        ready=ready,
        env={"PYTHONPATH": CHILD_PYTHONPATH},
        stderr="capture",
        timeout=60,
        grace=2,
        name="lock holder",
    )


class ProcessContract:
    url: str = ""
    #: The lease the process tests use: the shortest the engine honours well.
    ttl: float = 2.0
    #: How much later than the TTL a waiter may get a dead holder's lock (connection teardown,
    #: session expiry rounding).
    slack: float = 2.0
    racers: int = 4
    rounds: int = 200

    @pytest.fixture
    async def table(self) -> AsyncIterator[str]:
        conn = await _mariadb()
        name = f"race_{uuid.uuid4().hex[:10]}"
        await _execute(
            conn,
            f"CREATE TABLE {name} (id INT PRIMARY KEY, counter INT NOT NULL, holder VARCHAR(64) NULL, "
            "value VARCHAR(64) NULL, fence BIGINT NOT NULL DEFAULT 0)",
        )
        await _execute(conn, f"CREATE TABLE {name}_log (counter INT PRIMARY KEY, token BIGINT NOT NULL)")
        await _execute(conn, f"INSERT INTO {name} (id, counter) VALUES (1, 0)")
        try:
            yield name
        finally:
            await _execute(conn, f"DROP TABLE IF EXISTS {name}, {name}_log")
            conn.close()

    @pytest.mark.slow
    async def test_racing_processes_never_hold_at_once_nor_lose_an_update(self, table: str) -> None:
        name = f"race-{uuid.uuid4().hex[:12]}"
        children = [_child(RACER, self.url, name, str(self.rounds), table) for _ in range(self.racers)]
        try:
            results = []
            for child in children:
                match = await asyncio.to_thread(child.expect, r"^\{.*\}$", 300)
                results.append(json.loads(match[0]))
        finally:
            for child in children:
                child.stop()
        conn = await _mariadb()
        try:
            [(counter,)] = await _execute(conn, f"SELECT counter FROM {table} WHERE id = 1")
            log = await _execute(conn, f"SELECT counter, token FROM {table}_log ORDER BY counter")
        finally:
            conn.close()
        total = self.racers * self.rounds
        assert sum(r["doubles"] for r in results) == 0, "two holders at once"
        assert counter == total, f"lost updates: {total - counter}"
        tokens = [token for _, token in log]
        assert len(log) == total and all(a < b for a, b in itertools.pairwise(tokens)), (
            "tokens not strictly increasing in grant order"
        )

    @pytest.mark.slow
    async def test_a_killed_holders_lock_goes_to_a_waiter_within_the_ttl(self, table: str) -> None:
        name = f"kill-{uuid.uuid4().hex[:12]}"
        loop = asyncio.get_running_loop()
        holder = _child(HOLDER, self.url, name, str(self.ttl), table, "plain", ready=r"^HELD (\d+)")
        first = int(holder.ready_match[1])  # type: ignore[index]
        async with Locks(self.url) as locks:
            waiter = asyncio.create_task(locks.acquire(name, ttl=self.ttl, wait=self.ttl * 4 + self.slack))
            await asyncio.sleep(0.2)  # the waiter is waiting (not needed for correctness)
            holder.kill()
            killed_at = loop.time()
            held = await waiter
            took = loop.time() - killed_at
            await held.release()
        holder.stop()
        print(f"\nSIGKILL hand-over on {self.url.split('://')[0]}:// with ttl {self.ttl:g} s: {took:.2f} s")
        assert held.token > first
        assert took <= self.ttl + self.slack, f"the next holder waited {took:.2f} s after the kill"

    @pytest.mark.slow
    @pytest.mark.parametrize("fenced", [True, False], ids=["fenced", "unfenced"])
    async def test_a_paused_holders_late_write_is_refused_only_with_the_fence(self, table: str, fenced: bool) -> None:
        name = f"pause-{uuid.uuid4().hex[:12]}"
        holder = _child(
            HOLDER, self.url, name, str(self.ttl), table, "fenced" if fenced else "plain", ready=r"^HELD (\d+)"
        )
        try:
            first = int(holder.ready_match[1])  # type: ignore[index]
            holder.pause()  # past its TTL: it cannot renew, and the engine lets the lease go
            conn = await _mariadb()
            try:
                from meshkit.coord.fencing import fenced_update

                async with Locks(self.url) as locks:
                    second = await locks.acquire(name, ttl=30.0, wait=self.ttl * 4 + self.slack)
                    assert second.token > first
                    assert await fenced_update(conn, table, "id", 1, second.token, {"value": "second"})
                    holder.resume()  # it wakes and sends the write it was about to send
                    match = await asyncio.to_thread(holder.expect, r"^WROTE (true|false)", 30)
                    await second.release()
                [(value,)] = await _execute(conn, f"SELECT value FROM {table} WHERE id = 1")
            finally:
                conn.close()
        finally:
            holder.stop()
        if fenced:
            assert match[1] == "false" and value == "second", "the stale write was accepted"
        else:
            assert match[1] == "true" and value == f"holder-{first}"  # the lost update fencing prevents
