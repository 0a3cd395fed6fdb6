"""zk:// keeps the store contract on the shared ZooKeeper (a fresh root per test), rides out expired
sessions and a (private) ZooKeeper's restart under churn, lists consistently while others write,
prunes its log to the last ``keep`` revisions (Compacted before them), and fails fast, saying how
to start ZooKeeper, when none answers."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from kazoo.client import KazooClient

from meshkit.config import BadConfigRequest, Compacted, ConfigStore, ConfigUnavailable, config_backends
from meshkit.config.zk import CONNECT_TIMEOUT, DEFAULT_ROOT, MAX_VALUE, ZkConfig, escape, open_zk
from meshkit.errors import StatusCode
from meshkit.schemes import BackendURL
from tests.config.churn import watch_through_a_restart
from tests.config.contract import ConfigContract
from tests.discovery.engines import PrivateZooKeeper
from tests.helpers import eventually

ZK = "127.0.0.1:2181"
STARTING = re.escape("start it with: bash scripts/engines.sh")


@pytest.fixture(autouse=True)
def zookeeper_running() -> None:
    try:
        socket.create_connection(("127.0.0.1", 2181), timeout=2).close()
    except OSError as exc:
        pytest.fail(f"ZooKeeper is not running on {ZK} ({exc!r}); start it with: bash scripts/engines.sh")


class Inspector:
    """The shared ZooKeeper, read directly (not through the backend under test)."""

    def __init__(self, hosts: str = ZK) -> None:
        self.zk = KazooClient(hosts=hosts, timeout=10)
        self.zk.start(10)

    async def children(self, path: str) -> list[str]:
        if not await asyncio.to_thread(self.zk.exists, path):
            return []
        found: list[str] = await asyncio.to_thread(self.zk.get_children, path)
        return sorted(found)

    async def exists(self, path: str) -> bool:
        return await asyncio.to_thread(self.zk.exists, path) is not None

    async def data(self, path: str) -> bytes:
        data, _ = await asyncio.to_thread(self.zk.get, path)
        return bytes(data)

    async def remove(self, path: str) -> None:
        await asyncio.to_thread(self.zk.delete, path, recursive=True)

    async def close(self) -> None:
        await asyncio.to_thread(self.zk.stop)
        await asyncio.to_thread(self.zk.close)


@pytest.fixture
async def inspect() -> AsyncIterator[Inspector]:
    inspector = await asyncio.to_thread(Inspector)
    try:
        yield inspector
    finally:
        await inspector.close()


@pytest.fixture
async def root(inspect: Inspector) -> AsyncIterator[str]:
    """A root of the test's own on the shared ZooKeeper, removed afterwards."""
    path = f"/meshkit-test/config-{uuid.uuid4().hex[:12]}"
    yield path
    await inspect.remove(path)


def opened(url: str, **options: Any) -> ConfigStore:
    return ConfigStore(url, backend=open_zk(BackendURL.parse(url)), **options)


class TestZkStore(ConfigContract):
    @pytest.fixture(autouse=True)
    def store_root(self, root: str) -> None:
        self.url = f"zk://{ZK}{root}"

    def open(self) -> ConfigStore:
        return opened(self.url)


async def test_keys_of_any_printable_characters_are_one_node_each(root: str, inspect: Inspector) -> None:
    keys = [".", "..", "a/./b", "a/../b", "100%/sure", "ünï/cødé", "x?y#z&w=1", "zookeeper", "c/d/e"]
    async with opened(f"zk://{ZK}{root}") as store:
        start = (await store.list()).revision
        written = [await store.put(key, key) for key in keys]
        listing = await store.list()
        assert [(e.key, e.text) for e in listing] == sorted((key, key) for key in keys)
        changes = store.watch(since=start)
        assert [(c.key, c.revision) for c in [await anext(changes) for _ in keys]] == list(
            zip(keys, written, strict=True)
        )
        await changes.aclose()
        for key, revision in zip(keys, written, strict=True):
            entry = await store.get(key)
            assert entry is not None and (entry.text, entry.revision) == (key, revision)
            assert [c.revision for c in await store.history(key)] == [revision]
        assert [e.key for e in await store.list("a/")] == ["a/../b", "a/./b"]
    assert await inspect.children(f"{root}/keys") == sorted(escape(key) for key in keys), "flat: no parent nodes"


async def test_a_write_while_a_listing_reads_is_in_the_listing(root: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """ZooKeeper reads node by node: a listing replays the log of the writes made while it read."""
    url = f"zk://{ZK}{root}"
    async with opened(url) as writer, opened(url) as lister:
        await writer.put("p/one", "1")
        await writer.put("p/two", "2")
        backend = lister.backend
        assert isinstance(backend, ZkConfig)
        read_many = backend._get_many
        meanwhile: list[int | None] = []

        async def read_then_let_others_write(paths: list[str]) -> list[Any]:
            found = await read_many(paths)
            if not meanwhile:  # after the heads are read, before the store's revision is read again
                meanwhile.append(await writer.put("p/three", "3"))
                meanwhile.append(await writer.delete("p/one"))
                meanwhile.append(await writer.put("p/two", "2 again"))
                meanwhile.append(await writer.put("q/outside", "not listed"))
            return found

        monkeypatch.setattr(backend, "_get_many", read_then_let_others_write)
        listing = await lister.list("p/")
        three, _, two, last = meanwhile
        assert listing.revision == last
        assert [(e.key, e.value, e.revision) for e in listing] == [("p/three", b"3", three), ("p/two", b"2 again", two)]


async def test_listings_under_concurrent_writes_are_the_store_as_of_their_revision(root: str) -> None:
    url = f"zk://{ZK}{root}"
    keys = [f"k{i}" for i in range(5)]
    async with opened(url) as writer, opened(url) as lister:

        async def write() -> None:
            for i in range(150):
                await writer.put(keys[i % 5], str(i))
                if i % 7 == 0:
                    await writer.delete(keys[(i + 2) % 5])

        writing = asyncio.create_task(write())
        listings = []
        while not writing.done():
            listings.append(await lister.list())
        await writing
        histories = {key: await writer.history(key) for key in keys}
    assert len(listings) > 10
    for listing in listings:
        expected = {}
        for key, changes in histories.items():
            then = [c for c in changes if c.revision <= listing.revision]
            if then and then[-1].value is not None:
                expected[key] = (then[-1].value, then[-1].revision)
        assert {e.key: (e.value, e.revision) for e in listing} == expected, f"listing at {listing.revision}"


async def test_the_log_keeps_the_last_revisions_and_a_watch_from_before_says_compacted(
    root: str, inspect: Inspector
) -> None:
    keep = 10
    async with opened(f"zk://{ZK}{root}?keep={keep}") as store:
        pinned = await store.put("pinned", "old, but current")
        await store.put("gone", "deleted soon")
        deleted = await store.delete("gone")
        assert deleted is not None
        busy = [await store.put("busy", str(i)) for i in range(30)]
        last = busy[-1]

        async def pruned() -> bool:
            return await inspect.data(f"{root}/compacted") == str(last - keep).encode()

        await eventually(pruned, what="the log pruned to the last 10 revisions")
        assert await inspect.children(f"{root}/log") == [f"{r:010d}" for r in range(last - keep + 1, last + 1)]
        with pytest.raises(Compacted, match="list the prefix again") as compacted:
            await asyncio.wait_for(anext(store.watch("", since=last - keep - 1)), 10)
        assert compacted.value.code == StatusCode.OUT_OF_RANGE
        with pytest.raises(Compacted):
            await asyncio.wait_for(anext(store.watch("busy", since=pinned)), 10)
        changes = store.watch("", since=last - keep)
        assert [(await anext(changes)).revision for _ in range(keep)] == busy[-keep:]
        await changes.aclose()
        assert [c.revision for c in await store.history("busy")] == busy[-keep:]
        entry = await store.get("pinned")
        assert entry is not None and entry.revision == pinned, "a current value is kept however old"
        assert [c.revision for c in await store.history("pinned")] == [pinned]
        assert [e.key for e in await store.list()] == ["busy", "pinned"]
        assert await store.get("gone") is None and await store.history("gone") == []
        assert not await inspect.exists(f"{root}/keys/gone"), "a deleted key goes once its deletion is pruned"
        assert await store.put("gone", "back") == last + 1


async def test_a_value_at_the_stores_limit_fits_and_one_over_zookeepers_is_refused(root: str) -> None:
    url = f"zk://{ZK}{root}"
    big = os.urandom(512 * 1024)  # the store's default max_value
    async with opened(url) as store:
        revision = await store.put("big", big)
        entry = await store.get("big")
        assert entry is not None and entry.value == big
        change = await asyncio.wait_for(anext(store.watch("big", since=revision - 1)), 10)
        assert change.value == big
        assert [c.value for c in await store.history("big")] == [big]
        assert [e.value for e in await store.list("big")] == [big]
    async with opened(url, max_value=4 * 1024 * 1024) as roomy:
        with pytest.raises(BadConfigRequest, match=r"jute\.maxbuffer") as refused:
            await roomy.put("bigger", b"x" * (MAX_VALUE + 1))
        assert refused.value.code == StatusCode.RESOURCE_EXHAUSTED
        assert await roomy.get("bigger") is None


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("zk:///meshkit/config", "needs HOST:PORT"),
        ("zk://127.0.0.1:port/x", "Port could not be cast"),
        ("zk://127.0.0.1:2181,/x", "bad hostname"),
        ("zk://user:secret@127.0.0.1:2181", "no credentials"),
        ("zk://127.0.0.1:2181/x?ttl=5", "unknown option ttl"),
        ("zk://127.0.0.1:2181/x?keep=0", "keep is a number of revisions"),
        ("zk://127.0.0.1:2181/x?keep=2.5", "keep is a number of revisions"),
        ("zk://127.0.0.1:2181/x?keep=many", "keep must be a number"),
        ("zk://127.0.0.1:2181/a//b", "not a ZooKeeper path"),
        ("zk://127.0.0.1:2181/a/../b", "not a ZooKeeper path"),
        ("zk://127.0.0.1:2181/zookeeper/config", "not a ZooKeeper path"),
    ],
)
def test_a_bad_zk_url_is_a_bad_config_request(url: str, says: str) -> None:
    with pytest.raises(BadConfigRequest, match=says):
        open_zk(BackendURL.parse(url))


async def test_a_zk_url_without_a_path_is_the_default_root_and_opening_connects_to_nothing() -> None:
    backend = open_zk(BackendURL.parse("zk://127.0.0.1:2181,127.0.0.1:2182"))
    assert backend._root == DEFAULT_ROOT and backend.keep == 10_000
    assert backend._zk.state == "LOST", "no session until the first request"
    await backend.close()


async def test_an_unreachable_zookeeper_is_config_unavailable_quickly_saying_how_to_start_it() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    store = opened(f"zk://127.0.0.1:{port}/nowhere")
    loop = asyncio.get_running_loop()
    try:
        began = loop.time()
        with pytest.raises(ConfigUnavailable, match=STARTING) as unreachable:
            await store.get("k")
        assert loop.time() - began < CONNECT_TIMEOUT + 3
        assert unreachable.value.code == StatusCode.UNAVAILABLE and f"127.0.0.1:{port}" in str(unreachable.value)
        with pytest.raises(ConfigUnavailable, match=STARTING):
            await asyncio.wait_for(anext(store.watch("")), CONNECT_TIMEOUT + 5)  # tries again, fails again
    finally:
        await store.close()


async def test_a_closed_store_and_its_watch_say_it_is_closed(root: str) -> None:
    store = opened(f"zk://{ZK}{root}")
    written = await store.put("k", "v")
    changes = store.watch("k", since=written - 1)
    assert (await asyncio.wait_for(anext(changes), 10)).value == b"v"
    waiting = asyncio.ensure_future(anext(changes))
    await store.close()
    with pytest.raises(ConfigUnavailable, match="is closed"):
        await asyncio.wait_for(waiting, 10)
    with pytest.raises(ConfigUnavailable, match="is closed"):
        await store.get("k")


def serving(hosts: str) -> None:
    """Wait until a ZooKeeper opens sessions (its port opens before it does)."""
    client = KazooClient(hosts=hosts, timeout=10)
    client.start(60)
    client.stop()
    client.close()


def take_over_and_close(client_id: tuple[int, bytes], hosts: str = ZK) -> None:
    """Expire a session on the server: a second client takes it over and closes it."""
    other = KazooClient(hosts=hosts, client_id=client_id, timeout=10)
    other.start(10)
    other.stop()
    other.close()


async def test_a_watch_through_expired_sessions_under_churn_loses_repeats_and_reorders_nothing(
    root: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The churn scenario (1,000 puts from 3 writers), every session (the watcher's and the
    writers') expired after 300: the watcher resumes in a new session and sees every revision once."""
    backends: list[ZkConfig] = []

    def recording(url: BackendURL) -> ZkConfig:
        backend = open_zk(url)
        backends.append(backend)
        return backend

    monkeypatch.setitem(config_backends.declared, "zk", recording)

    async def expire_every_session() -> None:
        sessions = {backend: backend._zk.client_id for backend in backends}
        assert len(sessions) == 4 and all(sessions.values()), "the watcher and 3 writers have sessions"
        await asyncio.gather(*(asyncio.to_thread(take_over_and_close, client) for client in sessions.values()))

        def all_new() -> bool:
            return all(b._zk.client_id is not None and b._zk.client_id[0] != s[0] for b, s in sessions.items())

        await eventually(all_new, timeout=30, what="every store in a new session")

    await watch_through_a_restart(f"zk://{ZK}{root}", expire_every_session)


@pytest.mark.slow
async def test_a_watch_through_a_zookeeper_restart_under_churn_loses_repeats_and_reorders_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """1,000 puts from 3 writers while a private ZooKeeper is stopped and started again in the
    middle: the watcher sees exactly the store's revisions, once each, in order."""
    server = PrivateZooKeeper(port=21879)
    await asyncio.to_thread(server.start)
    await asyncio.to_thread(serving, f"127.0.0.1:{server.port}")
    monkeypatch.setitem(config_backends.declared, "zk", open_zk)

    async def restart() -> None:
        await asyncio.to_thread(server.stop)
        await asyncio.to_thread(server.start)

    try:
        await watch_through_a_restart(f"zk://127.0.0.1:{server.port}/churn", restart)
    finally:
        await asyncio.to_thread(server.remove)
