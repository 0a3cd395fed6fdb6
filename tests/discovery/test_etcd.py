"""The etcd backend against a real etcd (started by scripts/engines.sh; never skipped)."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import AsyncIterator

import pytest

from meshkit.discovery import Instance, open_registry
from meshkit.discovery.etcd import EtcdRegistry
from tests.discovery.scenarios import servers_and_clients_meet

ETCD = "127.0.0.1:2379"


def _require_etcd() -> None:
    try:
        socket.create_connection(("127.0.0.1", 2379), timeout=1).close()
    except OSError:
        pytest.fail("etcd is not running on 127.0.0.1:2379; start it with: bash scripts/engines.sh")


@pytest.fixture
async def etcd() -> AsyncIterator[EtcdRegistry]:
    _require_etcd()
    registry = EtcdRegistry(ETCD, prefix=f"/meshkit-test/{uuid.uuid4().hex}", ttl=2)
    yield registry
    await registry.close()


def inst(port: int, service: str = "svc") -> Instance:
    return Instance(service=service, host="127.0.0.1", port=port)


async def test_register_resolve_deregister(etcd: EtcdRegistry) -> None:
    a, b = inst(1001), inst(1002)
    await etcd.register(a)
    await etcd.register(b)
    assert {i.port for i in await etcd.resolve("svc")} == {1001, 1002}
    assert await etcd.resolve("other") == []
    await etcd.deregister(a)
    assert [i.port for i in await etcd.resolve("svc")] == [1002]


async def test_watch_sees_every_change(etcd: EtcdRegistry) -> None:
    a = inst(2001)
    await etcd.register(a)
    watcher = etcd.watch("svc")
    it = watcher.__aiter__()
    assert [i.port for i in await asyncio.wait_for(it.__anext__(), 5)] == [2001]
    b = inst(2002)
    await etcd.register(b)
    assert sorted(i.port for i in await asyncio.wait_for(it.__anext__(), 5)) == [2001, 2002]
    await etcd.deregister(a)
    assert [i.port for i in await asyncio.wait_for(it.__anext__(), 5)] == [2002]
    await watcher.close()


async def test_silent_instance_expires_with_its_lease(etcd: EtcdRegistry) -> None:
    await etcd.register(inst(3001))
    assert etcd._keepalive is not None
    etcd._keepalive.cancel()  # as if the process froze or died: no more renewals, no revoke
    started = time.monotonic()
    while await etcd.resolve("svc"):
        assert time.monotonic() - started < etcd.ttl + 5, "lease did not expire"
        await asyncio.sleep(0.2)
    assert time.monotonic() - started >= etcd.ttl - 1.5  # not removed long before its TTL


async def test_live_instance_is_kept_past_its_ttl(etcd: EtcdRegistry) -> None:
    await etcd.register(inst(4001))
    await asyncio.sleep(etcd.ttl * 2)  # the keepalive task renews meanwhile
    assert [i.port for i in await etcd.resolve("svc")] == [4001]


async def test_failover_to_the_next_endpoint() -> None:
    _require_etcd()
    registry = EtcdRegistry(f"127.0.0.1:1,{ETCD}", prefix=f"/meshkit-test/{uuid.uuid4().hex}")
    try:
        await registry.register(inst(5001))
        assert [i.port for i in await registry.resolve("svc")] == [5001]
    finally:
        await registry.close()


async def test_servers_and_clients_meet_through_etcd() -> None:
    _require_etcd()
    url = f"etcd://{ETCD}/meshkit-test/{uuid.uuid4().hex}"
    assert isinstance(open_registry(url), EtcdRegistry)
    await servers_and_clients_meet(url)
