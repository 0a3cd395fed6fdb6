"""The etcd and ZooKeeper lock backends as test fixtures, and a look at each engine from outside.

``engine`` is parametrised over both: each test gets a backend on its own prefix (so tests never
see each other's keys) and an :class:`Inspector` that reads the engine directly, not through the
backend, to check what is left behind. Both engines are the shared ones scripts/engines.sh starts;
a test fails (never skips) when one is down.
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from kazoo.client import KazooClient

from meshkit.coord.etcd import EtcdLocks
from meshkit.coord.etcd import escape as etcd_escape
from meshkit.coord.zookeeper import ZooKeeperLocks
from meshkit.coord.zookeeper import escape as zk_escape
from meshkit.discovery.etcd_http import b64, prefix_end, unb64
from tests.helpers import eventually as _eventually

ETCD = "127.0.0.1:2379"
ZK = "127.0.0.1:2181"


def require(host_port: str, engine: str) -> None:
    host, port = host_port.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
    except OSError:
        pytest.fail(f"{engine} is not running on {host_port}; start it with: bash scripts/engines.sh")


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 10.0, what: str = "") -> None:
    """tests.helpers.eventually, with this module's argument names."""
    await _eventually(check, within, what or str(check), interval=0.02)


class Inspector:
    """What one engine holds under a test's prefix, read without the backend under test."""

    async def nodes(self, name: str) -> list[str]:
        """The queue of ``name`` on the engine: its keys or child nodes."""
        raise NotImplementedError

    async def everything(self) -> list[str]:
        """Every key or node left under the test's prefix (empty parents of ZooKeeper included)."""
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


class EtcdInspector(Inspector):
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.http = httpx.AsyncClient(base_url=f"http://{ETCD}/v3")

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = await self.http.post(path, json=body)
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data

    async def kvs(self, prefix: str) -> list[dict[str, Any]]:
        found = await self.post("/kv/range", {"key": b64(prefix), "range_end": prefix_end(prefix)})
        kvs: list[dict[str, Any]] = found.get("kvs", [])
        return kvs

    async def nodes(self, name: str) -> list[str]:
        return [unb64(kv["key"]).decode() for kv in await self.kvs(f"{self.prefix}/{etcd_escape(name)}/")]

    async def leases(self, name: str) -> list[int]:
        return [int(kv["lease"]) for kv in await self.kvs(f"{self.prefix}/{etcd_escape(name)}/")]

    async def revoke(self, lease: int) -> None:
        await self.post("/lease/revoke", {"ID": lease})

    async def lease_exists(self, lease: int) -> bool:
        answer = await self.post("/lease/timetolive", {"ID": lease})
        return int(answer.get("TTL", -1)) > 0

    async def everything(self) -> list[str]:
        return [unb64(kv["key"]).decode() for kv in await self.kvs(self.prefix + "/")]

    async def close(self) -> None:
        await self.post("/kv/deleterange", {"key": b64(self.prefix + "/"), "range_end": prefix_end(self.prefix + "/")})
        await self.http.aclose()


class ZooKeeperInspector(Inspector):
    def __init__(self, prefix: str, hosts: str = ZK) -> None:
        self.prefix = prefix
        self.zk = KazooClient(hosts=hosts, timeout=10)
        self.zk.start(10)

    async def nodes(self, name: str) -> list[str]:
        path = f"{self.prefix}/{zk_escape(name)}"
        if not await asyncio.to_thread(self.zk.exists, path):
            return []
        children: list[str] = await asyncio.to_thread(self.zk.get_children, path)
        return children

    async def everything(self) -> list[str]:
        found: list[str] = []

        def walk(path: str) -> None:
            for child in self.zk.get_children(path):
                found.append(f"{path}/{child}")
                walk(f"{path}/{child}")

        if await asyncio.to_thread(self.zk.exists, self.prefix):
            await asyncio.to_thread(walk, self.prefix)
        return found

    async def close(self) -> None:
        await asyncio.to_thread(self.zk.delete, self.prefix, recursive=True)
        await asyncio.to_thread(self.zk.stop)
        await asyncio.to_thread(self.zk.close)


@dataclass
class Engine:
    """One engine under test: ``open()`` makes one more backend (a process of its own, as it
    were) on the test's prefix; ``inspect`` reads the engine directly."""

    kind: str
    prefix: str
    inspect: Inspector
    opened: list[Any]

    def open(self, session_timeout: float = 10.0) -> Any:
        backend: Any
        if self.kind == "etcd":
            backend = EtcdLocks(ETCD, prefix=self.prefix)
        else:
            backend = ZooKeeperLocks(ZK, prefix=self.prefix, session_timeout=session_timeout)
        self.opened.append(backend)
        return backend


async def _engine(kind: str) -> AsyncIterator[Engine]:
    prefix = f"/meshkit-test/coord-{uuid.uuid4().hex}"
    inspector: Inspector
    if kind == "etcd":
        require(ETCD, "etcd")
        inspector = EtcdInspector(prefix)
    else:
        require(ZK, "ZooKeeper")
        inspector = ZooKeeperInspector(prefix)
    engine = Engine(kind, prefix, inspector, [])
    try:
        yield engine
    finally:
        for backend in engine.opened:
            await backend.close()
        await inspector.close()


@pytest.fixture(params=["etcd", "zk"])
async def engine(request: pytest.FixtureRequest) -> AsyncIterator[Engine]:
    async for value in _engine(request.param):
        yield value


@pytest.fixture
async def etcd_engine() -> AsyncIterator[Engine]:
    async for value in _engine("etcd"):
        yield value


@pytest.fixture
async def zk_engine() -> AsyncIterator[Engine]:
    async for value in _engine("zk"):
        yield value


def unique() -> str:
    """A lock name no other test uses, with a '/' in it (backends must escape it)."""
    return f"test/{uuid.uuid4().hex}"
