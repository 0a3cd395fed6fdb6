"""meshkit:// — the configuration store of the built-in registry — keeps the store contract, and a
watcher rides out a registry restart: with --config-dir it resumes with no change lost or repeated;
without it, it is told its revisions are gone (Compacted) instead of going on in the history of
a store that started again from 0."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from meshkit import Server
from meshkit.config import Change, Compacted, ConfigStore, ConfigUnavailable
from meshkit.config.service import ConfigService
from meshkit.testing import ChildProcess, spawn
from tests.config.churn import watch_through_a_restart
from tests.config.contract import ConfigContract
from tests.helpers import CHILD_PYTHONPATH, eventually
from tests.resilience.redis_engine import closed_port


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[str]:
    async with Server([ConfigService(tmp_path / "config")], host="127.0.0.1", port=0, middleware=[]) as server:
        yield f"meshkit://127.0.0.1:{server.port}"


class TestBuiltinStore(ConfigContract):
    @pytest.fixture(autouse=True)
    def _url(self, registry: str) -> None:
        self.url = registry

    def open(self) -> ConfigStore:
        return ConfigStore(self.url)


def _registry(port: int, config_dir: Path | None) -> ChildProcess:
    argv = [sys.executable, "-m", "meshkit", "registry", "--port", str(port)]
    if config_dir is not None:
        argv += ["--config-dir", str(config_dir)]
    return spawn(argv, env={"PYTHONPATH": CHILD_PYTHONPATH}, ready=r"registry serving on", name="registry", timeout=30)


async def test_a_watch_resumes_across_a_registry_restart_with_nothing_lost_or_repeated(tmp_path: Path) -> None:
    port = closed_port()
    registry = await asyncio.to_thread(_registry, port, tmp_path / "config")
    seen: list[Change] = []
    try:
        async with ConfigStore(f"meshkit://127.0.0.1:{port}") as store:
            start = await store.put("policy/order", "limit = 1")

            async def watch() -> None:
                async for change in store.watch("policy/", since=start):
                    seen.append(change)
                    if len(seen) == 4:
                        return

            watcher = asyncio.create_task(watch())
            before = [await store.put("policy/order", f"limit = {i}") for i in (2, 3)]
            await eventually(lambda: len(seen) == 2, what="the watcher saw the first two")
            await asyncio.to_thread(registry.stop)
            with pytest.raises(ConfigUnavailable, match="start one with: meshkit registry"):
                await store.get("policy/order")
            registry = await asyncio.to_thread(_registry, port, tmp_path / "config")
            await eventually(lambda: _answers(store), what="the client reaching the restarted registry")
            after = [await store.put("policy/order", f"limit = {i}") for i in (4, 5)]
            await asyncio.wait_for(watcher, 20)
            assert [c.revision for c in seen] == before + after, "a change was lost or repeated"
            entry = await store.get("policy/order")
            assert entry is not None and entry.text == "limit = 5"
            assert len(await store.history("policy/order")) == 5, "the journal kept every revision"
    finally:
        registry.stop()


async def test_a_registry_that_lost_its_revisions_says_so_to_a_watcher(tmp_path: Path) -> None:
    port = closed_port()
    registry = await asyncio.to_thread(_registry, port, None)
    try:
        async with ConfigStore(f"meshkit://127.0.0.1:{port}") as store:
            start = await store.put("k", "1")
            await store.put("k", "2")
            changes = store.watch("", since=start)
            assert (await anext(changes)).value == b"2"
            await asyncio.to_thread(registry.stop)
            registry = await asyncio.to_thread(_registry, port, None)  # in memory: starts again from 0
            async with ConfigStore(f"meshkit://127.0.0.1:{port}") as other:
                for i in range(5):  # the new store passes the watcher's revision before it is back
                    await other.put("k", f"new-{i}")
            with pytest.raises(Compacted, match="not the one the watch began on"):
                await asyncio.wait_for(anext(changes), 20)
    finally:
        registry.stop()


async def _answers(store: ConfigStore) -> bool:
    try:
        await store.list()
    except ConfigUnavailable:
        return False
    return True


@pytest.mark.slow
async def test_a_watch_through_a_restart_under_churn_loses_repeats_and_reorders_nothing(tmp_path: Path) -> None:
    """1,000 puts from 3 writers while the registry is restarted from its journal in the middle:
    the watcher sees exactly the revisions the store has, once each, in order."""
    port = closed_port()
    registry = [await asyncio.to_thread(_registry, port, tmp_path / "config")]

    async def restart() -> None:
        await asyncio.to_thread(registry[0].stop)
        registry[0] = await asyncio.to_thread(_registry, port, tmp_path / "config")

    try:
        await watch_through_a_restart(f"meshkit://127.0.0.1:{port}", restart)
    finally:
        registry[0].stop()


async def test_two_registries_are_an_authority_and_its_stand_in_never_two_stores(tmp_path: Path) -> None:
    """``meshkit://A,B``: concurrent calls all go to A (spreading them would split one store in
    two, with two revision counters); B serves only while A is down."""
    first, second = ConfigService(tmp_path / "a"), ConfigService(tmp_path / "b")
    async with Server([second], host="127.0.0.1", port=0, middleware=[]) as b:
        a = Server([first], host="127.0.0.1", port=0, middleware=[])
        await a.start()
        async with ConfigStore(f"meshkit://127.0.0.1:{a.port},127.0.0.1:{b.port}") as store:
            revisions = await asyncio.gather(*(store.put(f"k{i}", str(i)) for i in range(40)))
            assert sorted(revisions) == list(range(1, 41)), "one store, one revision counter"
            assert (await second.store.list("")).revision == 0, "nothing reached the stand-in"
            await a.stop(grace=0)
            await eventually(lambda: _answers(store), what="the stand-in answering")
            assert await store.put("while-a-is-down", "x") == 1, "the stand-in's own store took it"
            assert (await second.store.get("while-a-is-down")) is not None


async def test_a_registry_whose_store_is_unusable_says_so_rather_than_unreachable(tmp_path: Path) -> None:
    async with Server([ConfigService(tmp_path / "config")], host="127.0.0.1", port=0, middleware=[]) as server:
        async with ConfigStore(f"meshkit://127.0.0.1:{server.port}") as store:
            await store.put("k", "1")
            with open(tmp_path / "config" / "journal", "ab") as journal:
                journal.write(b"not a revision\n{}\n")  # another process damaged it
            with pytest.raises(ConfigUnavailable, match="is up, but cannot use its configuration store") as err:
                await store.put("k", "2")
            assert "not a revision" in err.value.message and "unreachable" not in err.value.message


async def test_a_watch_from_a_listing_of_a_store_that_is_gone_says_compacted() -> None:
    """The listing names its store: a watch from its revision, begun after the registry came back
    without its revisions, is told so, instead of going on in the new store from that number."""
    port = closed_port()

    async def registry() -> Server:
        server = Server([ConfigService()], host="127.0.0.1", port=port, middleware=[])  # in memory
        await server.start()
        return server

    center = await registry()
    try:
        async with ConfigStore(f"meshkit://127.0.0.1:{port}") as store:
            await store.put("k", "1")
            listing = await store.list("")
            await center.stop(grace=0)
            center = await registry()
            await ConfigStore(f"meshkit://127.0.0.1:{port}").put("k", "other")  # revision 1 again
            with pytest.raises(Compacted, match="not the one the watch began on"):
                async with asyncio.timeout(10):
                    async for _ in store.watch("", since=listing.revision):
                        pass
    finally:
        await center.stop(grace=0)
