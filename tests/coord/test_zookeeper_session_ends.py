"""ZooKeeper: the lease is the session. When it expires the grant is gone (renew False, the next
waiter granted, a waiter told LockLost); while the connection is only suspended the grant is
uncertain (renew raises EngineUnavailable) until the session timeout has passed."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from kazoo.client import KazooClient

from meshkit.coord.zookeeper import ZooKeeperLocks
from meshkit.errors import EngineUnavailable, LockLost
from tests.coord.etcd_zk import ZK, Engine, ZooKeeperInspector, eventually, unique, zk_engine
from tests.discovery.engines import PrivateZooKeeper

__all__ = ["zk_engine"]


async def expire(backend: ZooKeeperLocks, hosts: str = ZK) -> None:
    """Expire ``backend``'s session on the server: a second client takes it over and closes it."""
    client_id = backend._zk.client_id
    assert client_id is not None

    def take_over_and_close() -> None:
        other = KazooClient(hosts=hosts, client_id=client_id, timeout=10)
        other.start(10)
        other.stop()
        other.close()

    await asyncio.to_thread(take_over_and_close)


async def renew_settles(backend: ZooKeeperLocks, grant: object) -> bool:
    """renew's answer once the connection is no longer suspended (EngineUnavailable meanwhile)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while True:
        try:
            return await backend.renew(grant)  # type: ignore[arg-type]
        except EngineUnavailable:
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.05)


async def test_an_expired_session_loses_the_grant_to_the_next_waiter(zk_engine: Engine) -> None:
    a, b = zk_engine.open(), zk_engine.open()
    name = unique()
    held = await a.acquire(name, "a", 10.0, None)
    waiter = asyncio.create_task(b.acquire(name, "b", 10.0, None))

    async def queued() -> bool:
        return len(await zk_engine.inspect.nodes(name)) == 2

    await eventually(queued, what="the waiter queued")
    await expire(a)
    successor = await asyncio.wait_for(waiter, 10)  # the server deleted a's node with its session
    assert successor.token > held.token
    assert await renew_settles(a, held) is False
    assert await a.release(held) is False
    assert await b.renew(successor)
    assert await b.release(successor)
    assert await zk_engine.inspect.everything() == []


async def test_a_waiter_whose_session_expired_is_never_granted(zk_engine: Engine) -> None:
    a, b = zk_engine.open(), zk_engine.open()
    name = unique()
    held = await a.acquire(name, "a", 10.0, None)
    waiter = asyncio.create_task(b.acquire(name, "b", 10.0, None))

    async def queued() -> bool:
        return len(await zk_engine.inspect.nodes(name)) == 2

    await eventually(queued, what="the waiter queued")
    await expire(b)
    with pytest.raises(LockLost):
        await asyncio.wait_for(waiter, 20)
    assert len(await zk_engine.inspect.nodes(name)) == 1
    assert await a.renew(held)
    assert await a.release(held)
    assert await zk_engine.inspect.everything() == []


async def test_a_ttl_longer_than_the_session_is_cut_to_the_session_timeout(zk_engine: Engine) -> None:
    backend = zk_engine.open(session_timeout=5.0)
    name = unique()
    long = await backend.acquire(name, "a", 30.0, 0)
    assert long.ttl == 5.0  # what the watchdog works from: the server may expire the session then
    assert await backend.release(long)
    short = await backend.acquire(name, "a", 2.0, 0)
    assert short.ttl == 2.0
    assert await backend.release(short)
    assert await zk_engine.inspect.everything() == []


def serving(server: PrivateZooKeeper) -> None:
    """Wait until ``server`` opens sessions (its port opens before it does)."""
    client = KazooClient(hosts=f"127.0.0.1:{server.port}", timeout=10)
    client.start(60)
    client.stop()
    client.close()


@pytest.fixture
async def private_zk() -> AsyncIterator[PrivateZooKeeper]:
    server = PrivateZooKeeper(port=21857)
    await asyncio.to_thread(server.start)
    await asyncio.to_thread(serving, server)
    try:
        yield server
    finally:
        await asyncio.to_thread(server.remove)


@pytest.mark.slow
async def test_a_suspended_connection_makes_the_grant_uncertain_until_the_session_timeout(
    private_zk: PrivateZooKeeper,
) -> None:
    hosts = f"127.0.0.1:{private_zk.port}"
    prefix = f"/meshkit-test/coord-{uuid.uuid4().hex}"
    # A session timeout well above a restart of the private ZooKeeper (its JVM takes seconds to
    # start on a loaded 2-core machine; past the timeout the grant is rightly given up).
    backend = ZooKeeperLocks(hosts, prefix=prefix, session_timeout=30.0)
    try:
        name = unique()
        held = await backend.acquire(name, "a", 30.0, 0)
        assert await backend.renew(held)

        # A restart shorter than the session timeout: uncertain meanwhile, ours again after.
        await asyncio.to_thread(private_zk.stop)
        with pytest.raises(EngineUnavailable, match="uncertain"):
            await backend.renew(held)
        await asyncio.to_thread(private_zk.start)
        assert await renew_settles(backend, held) is True
        inspect = ZooKeeperInspector(prefix, hosts=hosts)
        try:
            assert len(await inspect.nodes(name)) == 1
        finally:
            await asyncio.to_thread(inspect.zk.stop)
    finally:
        await backend.close()

    # Cut off for longer than the session timeout (a short one, in a session of its own): the
    # server may have expired it, so False.
    backend = ZooKeeperLocks(hosts, prefix=prefix, session_timeout=4.0)
    try:
        held = await backend.acquire(unique(), "b", 4.0, 0)
        assert await backend.renew(held)
        await asyncio.to_thread(private_zk.stop)
        loop = asyncio.get_running_loop()
        cut = loop.time()

        async def given_up() -> bool:
            try:
                return await backend.renew(held) is False
            except EngineUnavailable:
                return False

        await eventually(given_up, within=20, what="renew False after the session timeout")
        assert loop.time() - cut >= 4.0 - 0.5  # confirmed just before the cut
    finally:
        await backend.close()
