"""etcd: a lease revoked from outside (an operator, or expiry while the process was frozen) ends the
grant: the holder's renew says False, and a waiter whose lease went is never granted."""

from __future__ import annotations

import asyncio

import pytest

from meshkit.errors import LockLost
from tests.coord.etcd_zk import Engine, EtcdInspector, etcd_engine, eventually, unique

__all__ = ["etcd_engine"]


async def test_the_holders_lease_revoked_makes_renew_false(etcd_engine: Engine) -> None:
    a, b = etcd_engine.open(), etcd_engine.open()
    inspect = etcd_engine.inspect
    assert isinstance(inspect, EtcdInspector)
    name = unique()
    held = await a.acquire(name, "a", 10.0, None)
    assert await a.renew(held)
    (lease,) = await inspect.leases(name)
    await inspect.revoke(lease)
    assert await a.renew(held) is False
    assert await a.release(held) is False
    successor = await b.acquire(name, "b", 10.0, 0)  # the name is free at once
    assert successor.token > held.token
    assert await b.release(successor)


async def test_an_expired_holder_frees_the_name_after_its_ttl(etcd_engine: Engine) -> None:
    """A holder that stops renewing (crashed, frozen) gives way when its lease runs out."""
    a, b = etcd_engine.open(), etcd_engine.open()
    name = unique()
    held = await a.acquire(name, "a", 2.0, None)  # never renewed
    loop = asyncio.get_running_loop()
    started = loop.time()
    successor = await asyncio.wait_for(b.acquire(name, "b", 10.0, None), 10)
    assert 1.0 < loop.time() - started < 5.0
    assert successor.token > held.token
    assert await a.renew(held) is False
    assert await b.release(successor)


async def test_a_waiter_whose_lease_was_revoked_is_never_granted(etcd_engine: Engine) -> None:
    a, b = etcd_engine.open(), etcd_engine.open()
    inspect = etcd_engine.inspect
    assert isinstance(inspect, EtcdInspector)
    name = unique()
    held = await a.acquire(name, "a", 30.0, None)  # a long lease: the waiter's keepalive sleeps 10 s
    waiter = asyncio.create_task(b.acquire(name, "b", 30.0, None))

    async def queued() -> bool:
        return len(await inspect.leases(name)) == 2

    await eventually(queued, what="the waiter queued")
    holder_lease = held.handle[1]
    (waiter_lease,) = [lease for lease in await inspect.leases(name) if lease != holder_lease]
    await inspect.revoke(waiter_lease)
    assert await a.release(held)  # the waiter's predecessor goes: it looks again, and finds its key gone
    with pytest.raises(LockLost, match="ended while it waited"):
        await asyncio.wait_for(waiter, 10)
    assert await inspect.everything() == []
    assert await a.holder(name) is None


async def test_a_waiter_notices_its_lease_revoked_while_the_holder_stays(etcd_engine: Engine) -> None:
    a, b = etcd_engine.open(), etcd_engine.open()
    inspect = etcd_engine.inspect
    assert isinstance(inspect, EtcdInspector)
    name = unique()
    held = await a.acquire(name, "a", 3.0, None)
    waiter = asyncio.create_task(b.acquire(name, "b", 3.0, None))

    async def queued() -> bool:
        return len(await inspect.leases(name)) == 2

    await eventually(queued, what="the waiter queued")
    (waiter_lease,) = [lease for lease in await inspect.leases(name) if lease != held.handle[1]]
    await inspect.revoke(waiter_lease)
    with pytest.raises(LockLost):  # from the waiter's keepalive, within a third of its lease
        await asyncio.wait_for(waiter, 5)
    assert await a.renew(held)
    assert await a.release(held)
