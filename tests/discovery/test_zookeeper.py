"""The ZooKeeper backend against a real ZooKeeper (started by scripts/engines.sh; never skipped)."""

from __future__ import annotations

import asyncio
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from meshkit.discovery import Instance, open_registry
from meshkit.discovery.zookeeper import ZooKeeperRegistry
from meshkit.testing import spawn
from tests.discovery.scenarios import servers_and_clients_meet

ZK = "127.0.0.1:2181"
ROOT = Path(__file__).resolve().parents[2]


def _require_zk() -> None:
    try:
        socket.create_connection(("127.0.0.1", 2181), timeout=1).close()
    except OSError:
        pytest.fail("ZooKeeper is not running on 127.0.0.1:2181; start it with: bash scripts/engines.sh")


@pytest.fixture
async def zk() -> AsyncIterator[ZooKeeperRegistry]:
    _require_zk()
    registry = ZooKeeperRegistry(ZK, prefix=f"/meshkit-test/{uuid.uuid4().hex}", session_timeout=4)
    yield registry
    await registry.close()


def inst(port: int, service: str = "svc") -> Instance:
    return Instance(service=service, host="127.0.0.1", port=port)


async def test_register_resolve_deregister(zk: ZooKeeperRegistry) -> None:
    a, b = inst(1001), inst(1002)
    await zk.register(a)
    await zk.register(b)
    assert {i.port for i in await zk.resolve("svc")} == {1001, 1002}
    assert await zk.resolve("other") == []
    await zk.deregister(a)
    assert [i.port for i in await zk.resolve("svc")] == [1002]


async def test_watch_sees_every_change(zk: ZooKeeperRegistry) -> None:
    a = inst(2001)
    await zk.register(a)
    watcher = zk.watch("svc")
    it = watcher.__aiter__()
    assert [i.port for i in await asyncio.wait_for(it.__anext__(), 10)] == [2001]
    await zk.register(inst(2002))
    assert sorted(i.port for i in await asyncio.wait_for(it.__anext__(), 10)) == [2001, 2002]
    await zk.deregister(a)
    assert [i.port for i in await asyncio.wait_for(it.__anext__(), 10)] == [2002]
    await watcher.close()


REGISTER_AND_WAIT = """
import asyncio, sys
from meshkit.discovery import Instance
from meshkit.discovery.zookeeper import ZooKeeperRegistry
async def main():
    r = ZooKeeperRegistry(sys.argv[1], prefix=sys.argv[2], session_timeout=4)
    await r.register(Instance(service="svc", host="127.0.0.1", port=4242, id="doomed"))
    print("registered", flush=True)
    await asyncio.sleep(600)
asyncio.run(main())
"""


async def test_sigkilled_instance_leaves_when_its_session_expires(zk: ZooKeeperRegistry) -> None:
    with spawn(
        [sys.executable, "-c", REGISTER_AND_WAIT, ZK, zk._prefix],
        ready="^registered$",
        env={"PYTHONPATH": str(ROOT / "src")},
        timeout=30,
    ) as proc:
        assert [i.id for i in await zk.resolve("svc")] == ["doomed"]
        proc.kill()
        killed = time.monotonic()
        while await zk.resolve("svc"):
            assert time.monotonic() - killed < 4 + 6, "the ephemeral node outlived the session timeout"
            await asyncio.sleep(0.2)
        assert time.monotonic() - killed >= 1.5  # removed by session expiry, not at once


async def test_servers_and_clients_meet_through_zookeeper() -> None:
    _require_zk()
    url = f"zk://{ZK}/meshkit-test/{uuid.uuid4().hex}"
    assert isinstance(open_registry(url), ZooKeeperRegistry)
    await servers_and_clients_meet(url)
