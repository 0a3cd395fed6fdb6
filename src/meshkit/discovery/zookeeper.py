"""``zk://h1:2181,h2:2181[/prefix]``: real ZooKeeper via kazoo (CP, Zab).

Each instance is an *ephemeral* node ``{prefix}/{service}/{id}`` holding its JSON: ZooKeeper
deletes it when the process's session ends (a crash, or silence past the session timeout), so a
dead instance leaves without any help. kazoo reconnects by itself; if the session was *lost*
(expired while cut off), its ephemeral nodes are gone and this backend writes them again once
connected. Watches use kazoo's ChildrenWatch, which re-arms itself after every event.

kazoo runs its own thread; results come back to the event loop with ``call_soon_threadsafe``.
The client library is imported here only: ``pip install meshkit[zookeeper]``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from meshkit.discovery.instance import Instance

if TYPE_CHECKING:
    from meshkit.discovery.backends import RegistryURL
    from meshkit.discovery.registry import Registry

log = logging.getLogger("meshkit.discovery.zookeeper")

DEFAULT_PREFIX = "/meshkit/services"
DEFAULT_SESSION_TIMEOUT = 10.0

T = TypeVar("T")
_decode_instance = msgspec.json.Decoder(Instance).decode
_encode = msgspec.json.Encoder().encode


class ZooKeeperRegistry:
    #: ZooKeeper keeps its tree through restarts (Zab log, snapshots): CP, not forgetful.
    forgets_on_restart: bool = False

    def __init__(self, hosts: str, prefix: str = DEFAULT_PREFIX, session_timeout: float = DEFAULT_SESSION_TIMEOUT):
        try:
            from kazoo.client import KazooClient, KazooState
        except ImportError:  # pragma: no cover - depends on the install
            raise ImportError("the zk:// registry needs kazoo: pip install 'meshkit[zookeeper]'") from None
        self._states = KazooState
        self._prefix = prefix.rstrip("/") or DEFAULT_PREFIX
        self._zk = KazooClient(hosts=hosts, timeout=session_timeout)
        #: An ephemeral node outlives a silent process by the session timeout: the lease TTL.
        self.ttl = session_timeout
        self._zk.add_listener(self._state_changed)
        self._registered: dict[str, Instance] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started = False
        self._lost = False

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = self._loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, lambda: fn(*args))

    async def _ensure_started(self) -> None:
        if not self._started:
            await self._run(self._zk.start, 10)
            self._started = True

    def _path(self, service: str, instance_id: str = "") -> str:
        return f"{self._prefix}/{service}" + (f"/{instance_id}" if instance_id else "")

    def _state_changed(self, state: Any) -> None:  # kazoo's thread
        if state == self._states.LOST:
            self._lost = True
            log.warning("ZooKeeper session lost: ephemeral registrations are gone until reconnected")
        elif state == self._states.CONNECTED and self._lost:
            self._lost = False
            if self._loop is not None and self._registered:
                self._loop.call_soon_threadsafe(lambda: asyncio.ensure_future(self._restore()))

    async def _restore(self) -> None:
        for instance in list(self._registered.values()):
            try:
                await self._create(instance)
                log.info("re-registered %s/%s after the session was lost", instance.service, instance.id)
            except Exception as exc:  # noqa: BLE001 - try again at the next reconnect
                log.warning("could not re-register %s: %s", instance.id, exc)

    async def _create(self, instance: Instance) -> None:
        from kazoo.exceptions import NodeExistsError

        path = self._path(instance.service, instance.id)

        def create() -> None:
            try:
                self._zk.create(path, _encode(instance), ephemeral=True, makepath=True)
            except NodeExistsError:
                self._zk.set(path, _encode(instance))

        await self._run(create)

    async def register(self, instance: Instance) -> None:
        await self._ensure_started()
        await self._create(instance)
        self._registered[instance.id] = instance

    async def deregister(self, instance: Instance) -> None:
        from kazoo.exceptions import NoNodeError

        self._registered.pop(instance.id, None)
        await self._ensure_started()
        try:
            await self._run(self._zk.delete, self._path(instance.service, instance.id))
        except NoNodeError:
            pass

    def _read(self, service: str, children: list[str]) -> list[Instance]:  # kazoo's thread or executor
        from kazoo.exceptions import NoNodeError

        out = []
        for child in children:
            try:
                data, _ = self._zk.get(self._path(service, child))
            except NoNodeError:
                continue  # left between the listing and the read
            out.append(_decode_instance(data))
        return sorted(out, key=lambda i: i.id)

    async def resolve(self, service: str) -> list[Instance]:
        from kazoo.exceptions import NoNodeError

        await self._ensure_started()
        try:
            children = await self._run(self._zk.get_children, self._path(service))
        except NoNodeError:
            return []
        return await self._run(self._read, service, children)

    def watch(self, service: str) -> ZooKeeperWatcher:
        return ZooKeeperWatcher(self, service)

    async def close(self) -> None:
        if self._started:
            self._started = False
            await self._run(self._zk.stop)
            await self._run(self._zk.close)


def open_zookeeper(url: RegistryURL) -> Registry:
    """``zk://h1:2181,h2:2181[/prefix][?ttl=SECONDS]``: the TTL is the session timeout."""
    timeout = url.number("ttl", DEFAULT_SESSION_TIMEOUT)
    return ZooKeeperRegistry(url.netloc, prefix=url.path or DEFAULT_PREFIX, session_timeout=timeout)


class ZooKeeperWatcher:
    def __init__(self, registry: ZooKeeperRegistry, service: str) -> None:
        self._registry = registry
        self._service = service
        self._queue: asyncio.Queue[list[Instance] | None] = asyncio.Queue()
        self._closed = False

    def __aiter__(self) -> AsyncIterator[list[Instance]]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[list[Instance]]:
        from kazoo.recipe.watchers import ChildrenWatch

        reg = self._registry
        await reg._ensure_started()
        loop = asyncio.get_running_loop()
        path = reg._path(self._service)
        await reg._run(reg._zk.ensure_path, path)

        def changed(children: list[str]) -> bool:  # kazoo's thread
            if self._closed:
                return False  # stops the watch
            snapshot = reg._read(self._service, children)
            loop.call_soon_threadsafe(self._queue.put_nowait, snapshot)
            return True

        await reg._run(ChildrenWatch, reg._zk, path, changed)
        while True:
            snapshot = await self._queue.get()
            if snapshot is None:
                return
            yield snapshot

    async def close(self) -> None:
        self._closed = True
        self._queue.put_nowait(None)
