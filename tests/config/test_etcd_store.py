"""etcd:// keeps the store contract on the shared etcd (a fresh prefix per test), hides its
history markers, and says Compacted to a watch from before what a (private) etcd compacted."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest

from meshkit.config import Compacted, ConfigStore
from tests.config.churn import watch_through_a_restart
from tests.config.contract import ConfigContract
from tests.discovery.engines import PrivateEtcd

SHARED = "etcd://127.0.0.1:2379/meshkit-test/config"


@pytest.fixture(autouse=True)
async def etcd_running() -> None:
    try:
        async with httpx.AsyncClient(timeout=2.0) as http:
            await http.post("http://127.0.0.1:2379/v3/maintenance/status", json={})
    except httpx.HTTPError as exc:
        pytest.fail(f"etcd is not running on 127.0.0.1:2379 ({exc!r}); start it with: bash scripts/engines.sh")


class TestEtcdStore(ConfigContract):
    def open(self) -> ConfigStore:
        return ConfigStore(SHARED)


async def test_history_markers_are_never_listed_or_watched() -> None:
    prefix = f"markers-{uuid.uuid4().hex[:8]}/"
    async with ConfigStore(SHARED) as store:
        start = await store.put(f"{prefix}a", "1")
        assert [c.revision for c in await store.history(f"{prefix}a")] == [start]  # writes the marker
        later = await store.put(f"{prefix}b", "2")
        assert [e.key for e in await store.list(prefix)] == [f"{prefix}a", f"{prefix}b"]
        first = await asyncio.wait_for(anext(store.watch(prefix, since=start)), 10)
        assert (first.key, first.revision) == (f"{prefix}b", later)


async def test_a_watch_from_before_a_compaction_says_compacted() -> None:
    etcd = PrivateEtcd(client_port=23811, peer_port=23812)
    await asyncio.to_thread(etcd.start)
    try:
        async with ConfigStore(f"etcd://127.0.0.1:{etcd.port}/compacted") as store:
            first = await store.put("k", "1")
            for i in range(5):
                last = await store.put("k", str(i))
            async with httpx.AsyncClient() as http:
                answer = await http.post(f"http://127.0.0.1:{etcd.port}/v3/kv/compaction", json={"revision": last})
                assert answer.status_code == 200, answer.text
            with pytest.raises(Compacted, match="list the prefix again"):
                await asyncio.wait_for(anext(store.watch("", since=first)), 10)
            history = await store.history("k")
            assert [c.value for c in history] == [b"4"], "history starts where etcd's kept revisions do"
            assert (await store.rollback("k", to=last)) > last
    finally:
        await asyncio.to_thread(etcd.remove)


@pytest.mark.slow
async def test_a_watch_through_an_etcd_restart_under_churn_loses_repeats_and_reorders_nothing() -> None:
    """1,000 puts from 3 writers while a private etcd is SIGKILLed and started again in the middle:
    the watcher sees exactly the store's revisions, once each, in order."""
    etcd = PrivateEtcd(client_port=23813, peer_port=23814)
    await asyncio.to_thread(etcd.start)

    async def restart() -> None:
        await asyncio.to_thread(etcd.kill)
        await asyncio.to_thread(etcd.start)

    try:
        await watch_through_a_restart(f"etcd://127.0.0.1:{etcd.port}/churn", restart)
    finally:
        await asyncio.to_thread(etcd.remove)
