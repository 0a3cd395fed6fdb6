"""A registry engine restarts under load: clients keep calling the instances they know, servers
get their registrations back, clients re-watch and see newcomers. Uses private engine instances
on their own ports (tests never stop the shared ones)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from meshkit import Client, Server
from tests.discovery.engines import PrivateEtcd, PrivateZooKeeper
from tests.rpc.services import Who

pytestmark = pytest.mark.slow


@pytest.fixture(params=["etcd", "zk"])
def engine(request: pytest.FixtureRequest) -> Iterator[tuple[str, PrivateEtcd | PrivateZooKeeper]]:
    if request.param == "etcd":
        etcd = PrivateEtcd()
        etcd.start()
        yield f"etcd://127.0.0.1:{etcd.port}/restart?ttl=3", etcd
        etcd.remove()
    else:
        zk = PrivateZooKeeper()
        zk.start()
        yield f"zk://127.0.0.1:{zk.port}/restart?ttl=3", zk
        zk.remove()


async def _eventually(check, seconds: float) -> bool:  # type: ignore[no-untyped-def]
    for _ in range(int(seconds / 0.1)):
        if await check():
            return True
        await asyncio.sleep(0.1)
    return False


async def test_engine_restart(engine: tuple[str, PrivateEtcd | PrivateZooKeeper]) -> None:
    url, process = engine
    servers = [Server([Who(label)], middleware=[], registry=url) for label in "ab"]
    for s in servers:
        await s.start()
    try:
        async with Client(registry=url, balancer="round_robin") as c:
            who = c.proxy(Who)
            assert {await who.am_i() for _ in range(4)} == {"a", "b"}
            await asyncio.to_thread(process.stop)
            # Unreachable is not empty: the instances the client knows keep answering.
            assert sorted(await asyncio.gather(*(who.am_i() for _ in range(20)))) == ["a"] * 10 + ["b"] * 10
            await asyncio.to_thread(process.start)

            async def both_registered() -> bool:
                try:
                    return len(await c._registry.resolve("who")) == 2  # type: ignore[union-attr]
                except Exception:
                    return False

            assert await _eventually(both_registered, 20), "servers did not get their registrations back"
            late = Server([Who("c")], middleware=[], registry=url)
            servers.append(late)
            await late.start()

            async def sees_newcomer() -> bool:
                return len(c._services["who"].nodes) == 3

            assert await _eventually(sees_newcomer, 20), "the client did not watch again after the restart"
            assert {await who.am_i() for _ in range(9)} == {"a", "b", "c"}
    finally:
        for s in servers:
            await s.stop(grace=1)
