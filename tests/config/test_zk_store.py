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
from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import ConnectionLoss, NoNodeError, SessionMovedError, WriterNotClosedException

from meshkit.config import BadConfigRequest, Compacted, ConfigStore, ConfigUnavailable, config_backends
from meshkit.config import zk as zk_module
from meshkit.config.zk import CONNECT_TIMEOUT, DEFAULT_ROOT, LAST_REVISION, MAX_VALUE, ZkConfig, escape, open_zk
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
        ("zk://127.0.0.1:2181/x?ttl=", "unknown option ttl"),
        ("zk://127.0.0.1:2181/x?keep=", "keep is a number of revisions"),
        ("zk://127.0.0.1:2181/x?keep", "keep is a number of revisions"),
        ("zk://127.0.0.1:2181/x?keep=&keep=5", "keep is a number of revisions"),
        ("zk://127.0.0.1:2181/x?keep=0", "keep is a number of revisions"),
        ("zk://127.0.0.1:2181/x?keep=2.5", "keep is a number of revisions"),
        ("zk://127.0.0.1:2181/x?keep=many", "keep must be a number"),
        ("zk://127.0.0.1:2181/a//b", "not a ZooKeeper path"),
        ("zk://127.0.0.1:2181//", "not a ZooKeeper path"),
        ("zk://127.0.0.1:2181/a//", "not a ZooKeeper path"),
        ("zk://127.0.0.1:2181/my%20root", "not percent-decoded"),
        ("zk://127.0.0.1:2181/100%", "not percent-decoded"),
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


@pytest.mark.parametrize(
    ("url", "root"),
    [
        ("zk://127.0.0.1:2181/", DEFAULT_ROOT),
        ("zk://127.0.0.1:2181/a/", "/a"),
        ("zk://127.0.0.1:2181/a/b?keep=5", "/a/b"),
        ("zk://127.0.0.1:2181/a+b:c@d", "/a+b:c@d"),
    ],
)
async def test_a_zk_root_is_the_path_as_written_less_one_trailing_slash(url: str, root: str) -> None:
    backend = open_zk(BackendURL.parse(url))
    assert backend._root == root
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


class Lagging:
    """The backend's session taken over, right after a chosen request, by a server that lags the
    leader (as a new session after an expiry may be: kazoo forgets the last transaction it saw, so
    any follower may take it): until the next sync it answers as of revision ``stale``, ``rev`` at
    that version and the log and value nodes of later revisions absent."""

    def __init__(self, backend: ZkConfig, monkeypatch: pytest.MonkeyPatch) -> None:
        self.zk: Any = backend._zk
        self.root = backend._root
        self.stale: int | None = None  # lagging while not None
        self.trigger: tuple[str, str, int] | None = None
        self.answered = 0  # requests answered as the lagging server would
        for name in ("exists_async", "get_async", "get_children_async"):
            monkeypatch.setattr(self.zk, name, self._wrap(name, getattr(self.zk, name)))
        sync = self.zk.sync_async

        def synced(path: str) -> Any:
            self.stale = None  # the server catches up with the leader before it answers what follows
            return sync(path)

        monkeypatch.setattr(self.zk, "sync_async", synced)

    def after(self, name: str, path: str, stale: int) -> None:
        """Lag (at ``stale``) from the request after the next ``name(path)``."""
        self.trigger = (name, path, stale)

    def _revision_of(self, path: str) -> int | None:
        """The revision of a log node or a value node (None: another node)."""
        parts = path.removeprefix(self.root + "/").split("/")
        if (parts[0], len(parts)) in (("log", 2), ("keys", 3)):
            return int(parts[-1])
        return None

    def _wrap(self, name: str, real: Any) -> Any:
        def request(path: str, *args: Any) -> Any:
            answer = real(path, *args) if self.stale is None else self._lagging(name, real, self.stale, path, *args)
            if self.trigger is not None and self.trigger[:2] == (name, path):
                self.stale, self.trigger = self.trigger[2], None
            return answer

        return request

    def _lagging(self, name: str, real: Any, stale: int, path: str, *args: Any) -> Any:
        result = self.zk.handler.async_result()
        revision = self._revision_of(path)
        if revision is not None and revision > stale:
            self.answered += 1
            result.set_exception(NoNodeError())
            return result
        answer = real(path, *args)
        if name == "exists_async" and path == f"{self.root}/rev":
            self.answered += 1
            answer.rawlink(
                lambda r: (
                    result.set(r.value._replace(version=stale)) if r.successful() else result.set_exception(r.exception)
                )
            )
            return result
        return answer


async def test_a_watch_whose_session_moves_to_a_lagging_server_syncs_before_it_reads_the_log(
    root: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a sync before each batch of the log, a log node at or below the revision just read
    is "missing" on the lagging server: a false Compacted."""
    async with opened(f"zk://{ZK}{root}") as store:
        written = [await store.put(f"k{i}", str(i)) for i in range(5)]
        backend = store.backend
        assert isinstance(backend, ZkConfig)
        lagging = Lagging(backend, monkeypatch)
        lagging.after("exists_async", backend._rev, stale=0)
        changes = store.watch(since=0)
        assert [(await asyncio.wait_for(anext(changes), 10)).revision for _ in written] == written
        await changes.aclose()
        assert lagging.trigger is None, "the session moved"


async def test_a_listing_whose_session_moves_to_a_lagging_server_is_still_the_store_as_of_its_revision(
    root: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a sync before each read, the listing reads values (absent) and the store's revision
    (older than the first one it read) from the lagging server: it said the store was deleted."""
    async with opened(f"zk://{ZK}{root}") as store:
        written = [await store.put(f"k{i}", str(i)) for i in range(5)]
        backend = store.backend
        assert isinstance(backend, ZkConfig)
        lagging = Lagging(backend, monkeypatch)
        lagging.after("get_children_async", backend._keys, stale=written[1])
        listing = await store.list()
        assert lagging.trigger is None, "the session moved"
        assert listing.revision == written[-1]
        assert [(e.key, e.revision) for e in listing] == [(f"k{i}", r) for i, r in enumerate(written)]


async def test_a_history_whose_session_moves_to_a_lagging_server_drops_nothing(
    root: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with opened(f"zk://{ZK}{root}") as store:
        written = [await store.put("k", str(i)) for i in range(5)]
        backend = store.backend
        assert isinstance(backend, ZkConfig)
        lagging = Lagging(backend, monkeypatch)
        lagging.after("get_children_async", backend._head("k"), stale=written[1])
        assert [c.revision for c in await store.history("k")] == written
        assert lagging.trigger is None, "the session moved"


async def test_a_watch_rides_out_a_request_kazoo_never_answers(root: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """kazoo drops a request made while it resets an expired session: the watch's step times out,
    and it resumes as after a lost connection."""
    async with opened(f"zk://{ZK}{root}") as store:
        written = [await store.put(f"k{i}", str(i)) for i in range(3)]
        backend = store.backend
        assert isinstance(backend, ZkConfig)
        zk: Any = backend._zk
        monkeypatch.setattr(zk_module, "OPERATION_TIMEOUT", 1.0)
        monkeypatch.setattr(zk_module, "RECHECK", 0.1)
        dropped: list[Any] = []
        get = zk.get_async

        def get_async(path: str, *args: Any) -> Any:
            if "/log/" in path and not dropped:
                dropped.append(zk.handler.async_result())  # (never set: no answer comes)
                return dropped[0]
            return get(path, *args)

        monkeypatch.setattr(zk, "get_async", get_async)
        changes = store.watch(since=0)
        assert [(await asyncio.wait_for(anext(changes), 10)).revision for _ in written] == written
        await changes.aclose()
        assert dropped, "a request went unanswered"


async def test_a_watch_resumes_after_a_moved_session(root: str, monkeypatch: pytest.MonkeyPatch) -> None:
    async with opened(f"zk://{ZK}{root}") as store:
        written = [await store.put(f"k{i}", str(i)) for i in range(3)]
        backend = store.backend
        assert isinstance(backend, ZkConfig)
        zk: Any = backend._zk
        monkeypatch.setattr(zk_module, "RECHECK", 0.1)
        moved: list[Any] = []
        get = zk.get_async

        def get_async(path: str, *args: Any) -> Any:
            if "/log/" in path and not moved:
                moved.append(zk.handler.async_result())
                moved[0].set_exception(SessionMovedError())
                return moved[0]
            return get(path, *args)

        monkeypatch.setattr(zk, "get_async", get_async)
        changes = store.watch(since=0)
        assert [(await asyncio.wait_for(anext(changes), 10)).revision for _ in written] == written
        await changes.aclose()
        assert moved


async def test_a_store_at_the_end_of_its_revision_counter_refuses_writes(
    root: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``rev``'s version is a 32-bit number: a write past LAST_REVISION would make it wrap negative."""
    async with opened(f"zk://{ZK}{root}") as store:
        await store.put("k", "v")
        backend = store.backend
        assert isinstance(backend, ZkConfig)
        zk: Any = backend._zk
        exists = zk.exists_async

        def at_the_end(path: str, *args: Any) -> Any:
            answer = exists(path, *args)
            if path != backend._rev:
                return answer
            result = zk.handler.async_result()
            answer.rawlink(
                lambda r: (
                    result.set(r.value._replace(version=LAST_REVISION))
                    if r.successful()
                    else result.set_exception(r.exception)
                )
            )
            return result

        monkeypatch.setattr(zk, "exists_async", at_the_end)
        for write in (store.put("k", "w"), store.put("new", "v"), store.delete("k")):
            with pytest.raises(ConfigUnavailable, match="revision counter exhausted; use a new root") as refused:
                await asyncio.wait_for(write, 10)
            assert refused.value.code == StatusCode.RESOURCE_EXHAUSTED
        monkeypatch.undo()
        entry = await store.get("k")
        assert entry is not None and entry.text == "v" and (await store.list()).revision == 1


def never_answered(backend: ZkConfig, monkeypatch: pytest.MonkeyPatch, name: str) -> list[Any]:
    """kazoo's ``name`` (an ``*_async`` method) answers nothing from now on; the results handed out."""
    zk: Any = backend._zk
    unanswered: list[Any] = []

    def request(*args: Any, **kwargs: Any) -> Any:
        unanswered.append(zk.handler.async_result())
        return unanswered[-1]

    monkeypatch.setattr(zk, name, request)
    return unanswered


async def test_a_start_whose_nodes_get_no_answer_fails_in_time_saying_how_to_start_zookeeper(
    root: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = opened(f"zk://{ZK}{root}")
    backend = store.backend
    assert isinstance(backend, ZkConfig)
    monkeypatch.setattr(zk_module, "OPERATION_TIMEOUT", 1.0)
    unanswered = never_answered(backend, monkeypatch, "ensure_path_async")
    try:
        with pytest.raises(ConfigUnavailable, match=STARTING):
            await asyncio.wait_for(anext(store.watch(since=0)), 10)  # (a watch has no time limit of its own)
        assert backend._zk._connection._write_sock is None, "the client's sockets are closed"
    finally:
        for result in unanswered:  # (without the fix a worker thread waits for it)
            result.set_exception(ConnectionLoss())
        await store.close()


async def test_close_does_not_wait_for_a_start_whose_nodes_get_no_answer(
    root: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = opened(f"zk://{ZK}{root}")
    backend = store.backend
    assert isinstance(backend, ZkConfig)
    monkeypatch.setattr(zk_module, "CLEANUP_WAIT", 0.5)
    unanswered = never_answered(backend, monkeypatch, "ensure_path_async")
    getting = asyncio.ensure_future(store.get("k"))
    try:
        await eventually(lambda: unanswered, what="the store's nodes requested")
        await asyncio.wait_for(store.close(), 10)
        with pytest.raises(ConfigUnavailable, match="is closed"):
            await asyncio.wait_for(getting, 10)
        assert backend._zk._connection._write_sock is None, "the client's sockets are closed"
    finally:
        for result in unanswered:  # (without the fix a worker thread waits for it)
            result.set_exception(ConnectionLoss())
        await asyncio.gather(getting, return_exceptions=True)
        await store.close()


async def test_a_connection_lost_while_the_nodes_are_made_says_how_to_start_zookeeper_and_frees_the_client(
    root: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = opened(f"zk://{ZK}{root}")
    backend = store.backend
    assert isinstance(backend, ZkConfig)
    zk: Any = backend._zk

    def lost(*args: Any, **kwargs: Any) -> Any:
        result = zk.handler.async_result()
        result.set_exception(ConnectionLoss())
        return result

    monkeypatch.setattr(zk, "ensure_path_async", lost)
    try:
        with pytest.raises(ConfigUnavailable, match=STARTING):
            await store.get("k")
        assert zk._connection._write_sock is None, "a failed start closes the client (its sockets)"
        monkeypatch.undo()
        assert await store.get("k") is None, "the next request starts again"
    finally:
        await store.close()
    assert zk._connection._write_sock is None


async def test_a_client_that_will_not_stop_is_not_an_error_of_close_or_of_a_failed_start(
    root: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = opened(f"zk://{ZK}{root}")
    backend = store.backend
    assert isinstance(backend, ZkConfig)
    zk: Any = backend._zk
    stop = zk.stop

    def stop_stuck() -> None:
        stop()
        raise WriterNotClosedException("Writer still open from prior connection")

    def lost(*args: Any, **kwargs: Any) -> Any:
        result = zk.handler.async_result()
        result.set_exception(ConnectionLoss())
        return result

    ensure_path_async = zk.ensure_path_async
    monkeypatch.setattr(zk, "stop", stop_stuck)
    monkeypatch.setattr(zk, "ensure_path_async", lost)
    with pytest.raises(ConfigUnavailable, match=STARTING):
        await store.get("k")
    monkeypatch.setattr(zk, "ensure_path_async", ensure_path_async)
    await store.put("k", "v")
    await store.close()
    assert zk._connection._write_sock is None, "closed after all"


async def test_a_request_waiting_for_the_connection_fails_at_once_when_the_store_closes(
    root: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = opened(f"zk://{ZK}{root}")
    await store.put("k", "v")
    backend = store.backend
    assert isinstance(backend, ZkConfig)
    monkeypatch.setattr(backend._zk, "state", KazooState.SUSPENDED)
    getting = asyncio.ensure_future(store.get("k"))
    await eventually(lambda: backend._changed, what="the get waiting for the connection")
    loop = asyncio.get_running_loop()
    began = loop.time()
    await store.close()
    with pytest.raises(ConfigUnavailable, match="is closed"):
        await asyncio.wait_for(getting, 10)
    assert loop.time() - began < CONNECT_TIMEOUT / 2, "not after CONNECT_TIMEOUT"


async def test_close_cancels_a_pruning_that_outlasts_the_cleanup_wait(
    root: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = opened(f"zk://{ZK}{root}?keep=2")
    backend = store.backend
    assert isinstance(backend, ZkConfig)
    monkeypatch.setattr(zk_module, "CLEANUP_WAIT", 0.2)

    async def stuck(upto: int) -> None:
        await asyncio.Event().wait()

    monkeypatch.setattr(backend, "_prune_upto", stuck)
    try:
        for i in range(3):
            await store.put("k", str(i))
        pruning = backend._pruning
        assert pruning is not None and not pruning.done()
        await asyncio.wait_for(store.close(), 10)
        assert pruning.cancelled()
    finally:
        if backend._pruning is not None:
            backend._pruning.cancel()
        await store.close()


def test_a_callback_from_kazoo_as_the_loop_closes_does_not_raise_in_kazoos_thread() -> None:
    """Between its ``is_closed()`` check and ``call_soon_threadsafe`` the loop may close: raising
    there would stop kazoo's thread draining its callbacks."""

    class Closing:
        def is_closed(self) -> bool:
            return False

        def call_soon_threadsafe(self, *args: Any) -> None:
            raise RuntimeError("Event loop is closed")

    backend = open_zk(BackendURL.parse(f"zk://{ZK}/x"))
    backend._loop = Closing()  # type: ignore[assignment]
    backend._state_changed(KazooState.LOST)
    ZkConfig._call_soon(Closing(), print)  # type: ignore[arg-type]


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
