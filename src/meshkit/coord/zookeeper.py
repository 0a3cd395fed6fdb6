"""``zk://h1:2181,h2:2181[/prefix][?ttl=SECONDS]``: locks and elections on ZooKeeper (CP, Zab), the
recipe of ZooKeeper's own documentation, through kazoo.

One acquire is one *ephemeral sequential* node ``{prefix}/{escaped name}/lock-NNNNNNNNNN`` holding
the owner and the value. The children of the name, by sequence, are its queue: the lowest holds the
name; each waiter watches only the node just below its own (``exists`` with a watch), so a release
wakes exactly one waiter and the queue is FIFO. A waiter that is cancelled or times out deletes its
node, and the last node of a name to go takes the name's (empty) parent with it.

**The lease is the session.** An ephemeral node lives as long as the kazoo session that made it,
and one :class:`ZooKeeperLocks` opens one session, whose timeout is the URL's ``?ttl=`` (default
10 s; the server must allow it: its min/maxSessionTimeout, 2 and 20 * tickTime by default). So a
lock's lease is that session timeout, whatever ``ttl`` it asks for:

- a shorter ``ttl`` is kept (the watchdog renews at ttl/3 and gives up after ttl), but a holder
  that crashes or stops frees the name when its session expires, after the session timeout;
- a longer ``ttl`` is cut to the session timeout: the grant says so (``Grant.ttl``), and the
  watchdog, which works from it, gives up after that long without a renewal, before the server
  can have expired the session and granted the name to someone else. A holder cut off from
  ZooKeeper cannot know when the server expires its session; only the clock can tell it.

``renew`` checks the session: CONNECTED asks the server whether our node still exists and is
owned by our session (True/False); SUSPENDED (connection lost, the session may live on) raises
:class:`~meshkit.errors.EngineUnavailable`, the grant being uncertain, until the session timeout
since the last confirmation has passed, when it is False; LOST (the session expired; kazoo learns
it on reconnecting) is False.

The fencing token is our node's ``czxid``, the zxid of the transaction that created it, which
grows with every write of the whole ensemble. Not the sequence number: that counts children of the
parent node, and starts again at 0 when the parent is deleted and created again (which this
backend does when a name's queue empties), so a later holder could get a smaller one.

kazoo runs its own threads; its asynchronous calls are bridged to asyncio futures with
``call_soon_threadsafe``. The client library is imported here only: ``pip install meshkit[zookeeper]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from meshkit.coord.backend import Grant, Holder
from meshkit.coord.record import Record, decode_record, encode_record
from meshkit.discovery.kazoo_bridge import kazoo_future
from meshkit.errors import BadLockRequest, EngineUnavailable, LockLost, LockTimeout, StatusCode

if TYPE_CHECKING:
    from meshkit.schemes import BackendURL

log = logging.getLogger("meshkit.coord.zookeeper")

LOCKS_PREFIX = "/meshkit/locks"
ELECTIONS_PREFIX = "/meshkit/elections"
DEFAULT_SESSION_TIMEOUT = 10.0
#: How long connecting may take before the engine counts as unreachable.
CONNECT_TIMEOUT = 5.0
#: How long a cancelled waiter or a release waits for its node's deletion before it returns.
CLEANUP_WAIT = 5.0
NODE = "lock-"


def escape(name: str) -> str:
    """A name as one node name: '/', '%' and anything not ASCII percent-encoded; '.' and '..'
    (which ZooKeeper refuses as node names) too."""
    quoted = urllib.parse.quote(name, safe="")
    return quoted.replace(".", "%2E") if quoted in (".", "..") else quoted


def _sequence(child: str) -> int:
    return int(child.rsplit("-", 1)[1])


@dataclass(slots=True)
class _Node:
    """A grant's handle: our node, the session that owns it, when the server last confirmed it."""

    path: str
    session: int
    confirmed: float


class ZooKeeperLocks:
    """Locks and elections over one kazoo session (see the module docstring for what ttl means)."""

    def __init__(
        self, hosts: str, prefix: str = LOCKS_PREFIX, session_timeout: float = DEFAULT_SESSION_TIMEOUT
    ) -> None:
        try:
            from kazoo import exceptions
            from kazoo.client import KazooClient, KazooState
        except ImportError:  # pragma: no cover - depends on the install
            raise ImportError("zk:// locks need kazoo: pip install 'meshkit[zookeeper]'") from None
        self._errors = exceptions
        self._states = KazooState
        self._hosts = hosts
        self._prefix = prefix.rstrip("/") or LOCKS_PREFIX
        self.session_timeout = session_timeout
        self._zk = KazooClient(hosts=hosts, timeout=session_timeout)
        self._zk.add_listener(self._state_changed)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._starting: asyncio.Task[None] | None = None
        self._started = False
        #: Set from kazoo's thread on every state change: waiters look again when it is set.
        self._changed: set[asyncio.Event] = set()
        self._cleanups: set[asyncio.Task[Any]] = set()

    # -- kazoo's thread to the event loop ------------------------------------------------------
    def _state_changed(self, state: Any) -> None:  # kazoo's thread
        if state == self._states.LOST and self._started:
            log.warning("ZooKeeper session lost: every lock this process held on %s is gone", self._hosts)
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake_all)

    def _wake_all(self) -> None:
        for event in self._changed:
            event.set()

    def _unavailable(self, exc: BaseException) -> EngineUnavailable:
        if isinstance(exc, self._errors.AuthFailedError | self._errors.NoAuthError):
            return EngineUnavailable(
                f"ZooKeeper at {self._hosts} refused our credentials: {exc!r}", code=StatusCode.UNAUTHENTICATED
            )
        return EngineUnavailable(
            f"ZooKeeper at {self._hosts} cannot be reached ({exc!r}); start it with: bash scripts/engines.sh"
        )

    async def _call(self, start: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run kazoo's ``start(*args)`` (an ``*_async`` method) and await its result here.

        Cancelling the await does not undo the request: callers that create must clean up."""
        try:
            return await kazoo_future(start, *args, **kwargs)
        except (self._errors.ConnectionLoss, self._errors.SessionExpiredError, self._errors.ConnectionClosedError) as e:
            raise self._unavailable(e) from e
        except (self._errors.AuthFailedError, self._errors.NoAuthError) as exc:
            raise self._unavailable(exc) from exc

    async def _ensure_started(self) -> None:
        """Open the session once. The connecting runs in a thread that cancelling cannot stop, so it
        is one shared task: a cancelled caller leaves it to finish, and the next caller awaits it."""
        self._loop = asyncio.get_running_loop()
        if self._starting is None or (self._starting.done() and self._starting.exception() is not None):
            self._starting = self._loop.create_task(self._start())
        await asyncio.shield(self._starting)

    async def _start(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(None, self._zk.start, CONNECT_TIMEOUT)
        except Exception as exc:
            await loop.run_in_executor(None, self._zk.stop)
            raise EngineUnavailable(
                f"ZooKeeper at {self._hosts} cannot be reached (no session within {CONNECT_TIMEOUT:g}s: "
                f"{exc!r}); start it with: bash scripts/engines.sh"
            ) from exc
        self._started = True

    def _dir(self, name: str) -> str:
        return f"{self._prefix}/{escape(name)}"

    # -- acquire -----------------------------------------------------------------------------
    async def acquire(self, name: str, owner: str, ttl: float, wait: float | None, value: bytes = b"") -> Grant:
        ttl = min(ttl, self.session_timeout)  # the session is the lease: see the module docstring
        await self._ensure_started()
        if self._zk.state != self._states.CONNECTED:
            raise EngineUnavailable(
                f"ZooKeeper at {self._hosts}: not connected ({self._zk.state}); start it with: bash scripts/engines.sh"
            )
        path, stat = await self._create(self._dir(name) + "/" + NODE, encode_record(Record(owner, value)))
        try:
            loop = asyncio.get_running_loop()
            sent_at = loop.time()  # the session was confirmed no earlier than this
            if wait == 0:
                if await self._predecessor(name, path) is not None:
                    raise LockTimeout(f"lock {name!r} is held (ZooKeeper {self._hosts})")
            else:
                try:
                    async with asyncio.timeout(wait):
                        sent_at = await self._wait_turn(name, path)
                except TimeoutError:
                    raise LockTimeout(
                        f"lock {name!r} was not granted within {wait:g}s (ZooKeeper {self._hosts})"
                    ) from None
        except BaseException:
            await self._discard(path)
            raise
        handle = _Node(path, stat.ephemeralOwner, time.monotonic())
        return Grant(name, owner, stat.czxid, ttl, sent_at=sent_at, value=value, handle=handle)

    async def _create(self, prefix: str, data: bytes) -> tuple[str, Any]:
        """Our node, created even if we are cancelled meanwhile (and then deleted again)."""
        task = asyncio.get_running_loop().create_task(
            self._call(
                self._zk.create_async, prefix, data, ephemeral=True, sequence=True, makepath=True, include_data=True
            )
        )
        try:
            created: tuple[str, Any] = await asyncio.shield(task)
            return created
        except asyncio.CancelledError:
            cleanup = asyncio.get_running_loop().create_task(self._delete_created(task))
            self._track(cleanup)
            await asyncio.wait({cleanup}, timeout=CLEANUP_WAIT)
            raise

    async def _delete_created(self, creating: asyncio.Task[tuple[str, Any]]) -> None:
        with contextlib.suppress(Exception):
            path, _ = await creating
            await self._delete(path)

    async def _predecessor(self, name: str, path: str) -> str | None:
        """The node just below ours (None: ours is lowest). LockLost if ours is gone."""
        children = await self._call(self._zk.get_children_async, self._dir(name))
        ours = path.rsplit("/", 1)[1]
        if ours not in children:
            raise LockLost(f"the session of the waiter for {name!r} ended while it waited (ZooKeeper {self._hosts})")
        below = [child for child in children if _sequence(child) < _sequence(ours)]
        return f"{self._dir(name)}/{max(below, key=_sequence)}" if below else None

    async def _wait_turn(self, name: str, path: str) -> float:
        """Return once our node is the lowest: the loop time at which the look that found it so
        was sent (the server had our session alive then, so the lease runs from no earlier)."""
        woken = asyncio.Event()
        loop = asyncio.get_running_loop()
        self._changed.add(woken)
        try:
            while True:
                woken.clear()
                if self._zk.state == self._states.LOST:
                    raise LockLost(f"the ZooKeeper session of the waiter for {name!r} expired ({self._hosts})")
                if self._zk.state != self._states.CONNECTED:
                    await woken.wait()  # suspended: look again once the state changes
                    continue
                try:
                    sent_at = loop.time()
                    predecessor = await self._predecessor(name, path)
                    if predecessor is None:
                        return sent_at

                    def watch(event: Any, woken: asyncio.Event = woken) -> None:  # kazoo's thread
                        if not loop.is_closed():
                            loop.call_soon_threadsafe(woken.set)

                    if await self._call(self._zk.exists_async, predecessor, watch) is None:
                        continue  # gone between the listing and the watch
                except EngineUnavailable:
                    if self._zk.state == self._states.CONNECTED:
                        raise
                    continue  # the connection dropped under the request: wait for it
                await woken.wait()
        finally:
            self._changed.discard(woken)

    # -- cleanup ------------------------------------------------------------------------------
    def _track(self, task: asyncio.Task[Any]) -> None:
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)

    async def _delete(self, path: str) -> bool:
        """Delete our node and, if that emptied it, the name's parent. False: it was gone."""
        try:
            await self._call(self._zk.delete_async, path)
        except self._errors.NoNodeError:
            return False
        except EngineUnavailable:
            return False  # the session is gone, and the node with it
        with contextlib.suppress(self._errors.NotEmptyError, self._errors.NoNodeError, EngineUnavailable):
            await self._call(self._zk.delete_async, path.rsplit("/", 1)[0])
        return True

    async def _discard(self, path: str) -> None:
        task = asyncio.get_running_loop().create_task(self._delete(path))
        self._track(task)
        await asyncio.wait({task}, timeout=CLEANUP_WAIT)

    # -- renew, release -------------------------------------------------------------------------
    async def renew(self, grant: Grant) -> bool:
        node: _Node = grant.handle
        state = self._zk.state
        if state == self._states.LOST:
            return False
        if state != self._states.CONNECTED:
            if time.monotonic() - node.confirmed > self.session_timeout:
                return False  # the server has expired the session by now
            raise EngineUnavailable(
                f"ZooKeeper at {self._hosts}: connection suspended, the grant of {grant.name!r} is uncertain"
            )
        stat = await self._call(self._zk.exists_async, node.path)
        if stat is None or stat.ephemeralOwner != node.session:
            return False
        node.confirmed = time.monotonic()
        return True

    async def release(self, grant: Grant) -> bool:
        node: _Node = grant.handle
        if self._zk.state == self._states.LOST:
            return False
        client = self._zk.client_id
        if client is not None and client[0] != node.session:
            return False  # a new session: ours expired, and its node with it
        task = asyncio.get_running_loop().create_task(self._delete(node.path))
        self._track(task)
        done, _ = await asyncio.wait({task}, timeout=CLEANUP_WAIT)
        if not done:
            raise EngineUnavailable(
                f"ZooKeeper at {self._hosts} did not confirm the release of {grant.name!r} within {CLEANUP_WAIT:g}s; "
                "the node goes when the deletion reaches it or the session expires"
            )
        return task.result()

    # -- elections ------------------------------------------------------------------------------
    async def _read(self, name: str, children: list[str]) -> Holder | None:
        for child in sorted(children, key=_sequence):
            try:
                data, stat = await self._call(self._zk.get_async, f"{self._dir(name)}/{child}")
            except self._errors.NoNodeError:
                continue  # left between the listing and the read: the next one holds it
            record = decode_record(data)
            return Holder(record.owner, record.value, stat.czxid)
        return None

    async def holder(self, name: str) -> Holder | None:
        await self._ensure_started()
        try:
            children = await self._call(self._zk.get_children_async, self._dir(name))
        except self._errors.NoNodeError:
            return None
        return await self._read(name, children)

    async def watch(self, name: str) -> AsyncIterator[Holder | None]:
        await self._ensure_started()
        loop = asyncio.get_running_loop()
        woken = asyncio.Event()

        def watch(event: Any) -> None:  # kazoo's thread
            if not loop.is_closed():
                loop.call_soon_threadsafe(woken.set)

        last: Holder | str | None = "nothing yet"
        self._changed.add(woken)
        try:
            while True:
                woken.clear()
                try:
                    children = await self._call(self._zk.get_children_async, self._dir(name), watch)
                except self._errors.NoNodeError:
                    # Nobody queued: wait for the parent to be created (or for a state change).
                    if await self._call(self._zk.exists_async, self._dir(name), watch) is not None:
                        continue
                    children = []
                except EngineUnavailable:
                    if self._zk.state == self._states.CONNECTED:
                        raise
                    await woken.wait()
                    continue
                now = await self._read(name, children)
                if now != last:
                    yield now
                    last = now
                await woken.wait()
        finally:
            self._changed.discard(woken)

    async def close(self) -> None:
        if self._cleanups:
            await asyncio.wait(set(self._cleanups), timeout=CLEANUP_WAIT)
        if self._starting is not None:
            await asyncio.gather(self._starting, return_exceptions=True)
        if self._started:
            self._started = False
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, self._zk.stop)
            await loop.run_in_executor(None, self._zk.close)


def _session_timeout(url: BackendURL) -> float:
    timeout = url.number("ttl", DEFAULT_SESSION_TIMEOUT)
    if not (math.isfinite(timeout) and timeout > 0):
        raise BadLockRequest(f"URL {url.url!r}: ttl (the ZooKeeper session timeout) must be above 0, got {timeout!r}")
    return timeout


def open_zookeeper_locks(url: BackendURL) -> ZooKeeperLocks:
    """``zk://h1:2181,h2:2181[/prefix][?ttl=SECONDS]`` for locks (prefix /meshkit/locks)."""
    return ZooKeeperLocks(url.netloc, prefix=url.path or LOCKS_PREFIX, session_timeout=_session_timeout(url))


def open_zookeeper_elections(url: BackendURL) -> ZooKeeperLocks:
    """``zk://h1:2181,h2:2181[/prefix][?ttl=SECONDS]`` for elections (prefix /meshkit/elections)."""
    return ZooKeeperLocks(url.netloc, prefix=url.path or ELECTIONS_PREFIX, session_timeout=_session_timeout(url))
