"""``zk://h1:2181,h2:2181[/root][?keep=N]``: configuration on ZooKeeper, with a revision counter of its own.

ZooKeeper has no revision of the whole tree a client can read, so the store keeps one, under its
root (``/meshkit/config`` unless the URL's path says otherwise; the path is the nodes' names as
written, not percent-decoded, so a root with a '%' in it is refused)::

    {root}/rev                   the store's revision: this node's data version (0: an empty store)
    {root}/log/{rev}             one node per revision: the key it wrote, and whether it deleted it
    {root}/keys/{key}            the key's head: the revision of its last write (a put or a deletion)
    {root}/keys/{key}/{rev}      what that revision wrote: "=" and the value, or "-" for a deletion
    {root}/compacted             the revision up to which the log has been pruned

``{key}`` is the key percent-encoded into one node name (``policy%2Forder``), so keys need no parent
nodes (to create in a transaction, or to leave behind empty); ``{rev}`` is the revision in ten
digits. A value is stored once, in its value node: the log says which key a revision wrote, so a
transaction stays under ZooKeeper's request limit with the largest value. Through kazoo:

- **One revision counter per store.** A write is one ZooKeeper transaction (``multi``): set ``rev``
  at the version the writer read (its revision is that version + 1), set or create the key's head
  at the version read, create the revision's value node and its log node. All of it or none: a
  writer that raced another fails on ``rev``'s version, reads again and retries, so writes are
  serialised and revisions are consecutive (1, 2, 3, ...), as the file backend's are.
- **Compare-and-set.** ``expect`` is checked against the head read before the transaction, and the
  transaction's version checks make sure the head is still what was read when it commits; so
  :class:`~meshkit.errors.Conflict` names the revision found, and only one racing writer wins. A
  write whose answer is lost with the connection (or does not come within 30 s) raises
  :class:`~meshkit.errors.ConfigUnavailable` saying it may or may not have been applied.
- **Watch** reads ``rev`` with a data watch on it, then the log nodes after ``since`` up to it, in
  order, and the value nodes of those under the prefix; then waits for the watch (or a change of
  the session's state; it looks again every few seconds regardless). After a connection loss or a
  session expiry (or a step that got no answer within 30 s: kazoo drops a request made while it
  resets an expired session) it resumes from the last revision it delivered once kazoo is
  connected again (kazoo tries every 2 s at most). A watch from before what the log still keeps
  raises :class:`~meshkit.errors.Compacted`.
- **Retention.** The log keeps the last ``keep`` revisions (``?keep=``, default 10,000): the writer
  of every ``keep/10``-th revision (every 100th for the default) prunes, in the background, the
  log nodes and value nodes older than that, except each key's current value, which stays as long
  as it is current (a deleted key's head goes once its deletion is pruned), and raises
  ``compacted``. ``history`` is the key's value nodes: its writes among the last ``keep``
  revisions of the store, and its current value however old.
- **Listing.** ZooKeeper reads one node at a time, so ``list`` reads ``rev``, the heads and values
  under the prefix, ``rev`` again, and replays the log between the two onto what it read: the
  listing is the store as of the second revision, which a watch from it continues exactly.
- **Reads are up to date**: every read (every batch of them) starts with a ``sync`` sent in the
  same pipeline, and the sync's answer is awaited too, so a server that lags the leader answers
  only once it has caught up with it, also in a new session: kazoo forgets the last transaction it
  saw when a session expires, so the new one may be on a follower behind the revisions already
  read (without a sync, a watch would find log nodes "missing" and say Compacted, a listing would
  read an older revision after a newer one). A Conflict, a listing or a watch's first look never
  names a revision older than one another process was told.

Sizes: a write carries its value once (in its value node), and ZooKeeper refuses a request over its
``jute.maxbuffer`` (1 MiB by default), so a value may be at most :data:`MAX_VALUE` bytes here; the
store's default limit (512 KiB) is under it. The counter is a node version, a 32-bit number: a
store takes :data:`LAST_REVISION` writes, then refuses more (ConfigUnavailable, RESOURCE_EXHAUSTED:
use a new root) rather than let the version wrap negative. kazoo runs its own threads; its
asynchronous calls are bridged to asyncio futures with ``call_soon_threadsafe``. The client library
is imported here only: ``pip install meshkit[zookeeper]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

import msgspec

from meshkit.config.backend import Change, Changes, Entry, Listing
from meshkit.discovery.kazoo_bridge import call_soon, kazoo_future
from meshkit.errors import BadConfigRequest, Compacted, ConfigUnavailable, Conflict, StatusCode
from meshkit.schemes import BackendURL

log = logging.getLogger("meshkit.config")
T = TypeVar("T")

DEFAULT_ROOT = "/meshkit/config"
#: How many revisions the log keeps by default (``?keep=``).
DEFAULT_KEEP = 10_000
#: The session timeout: this backend holds no ephemeral nodes, so it only bounds how long a silent
#: server is trusted.
SESSION_TIMEOUT = 10.0
#: How long connecting (and, later, waiting for a dropped connection to come back) may take before
#: the engine counts as unreachable.
CONNECT_TIMEOUT = 5.0
#: The longest pause between kazoo's attempts to reach ZooKeeper again.
RECONNECT_MAX_PAUSE = 2.0
#: A watch reads the store's revision at least this often, whether a watch event came or not.
RECHECK = 5.0
#: How many reads are sent at once (pipelined on the session) and revisions read per step.
BATCH = 128
#: The largest value this backend writes: ZooKeeper's jute.maxbuffer (1 MiB by default) less room
#: for the rest of the transaction.
MAX_VALUE = 1_000_000
#: The longest a get, list, history, put or delete may take: a request made in the instant the
#: connection drops waits in kazoo's queue until it is back, however long that takes.
OPERATION_TIMEOUT = 30.0
#: How many times ``list`` reads again when the log it replays was pruned meanwhile.
LIST_ATTEMPTS = 10
#: How long ``close`` waits for a pruning still under way (then cancels it), or for a session being
#: opened.
CLEANUP_WAIT = 5.0
#: The last revision a store writes: one short of the largest a node version holds (a signed 32-bit
#: number; the write after that one would make ``rev``'s version wrap negative).
LAST_REVISION = 2**31 - 2
OPTIONS = ("keep",)
PUT = b"="
DELETED = b"-"


class _Head(msgspec.Struct, frozen=True):
    """``{root}/keys/{key}``: the revision of the key's last write, a deletion or not."""

    rev: int
    deleted: bool = False


class _Logged(msgspec.Struct, frozen=True):
    """``{root}/log/{rev}``: the key the revision wrote, a deletion or not."""

    key: str
    deleted: bool = False


_encode = msgspec.json.Encoder().encode
_decode_head = msgspec.json.Decoder(_Head).decode
_decode_logged = msgspec.json.Decoder(_Logged).decode


def escape(key: str) -> str:
    """A key as one node name: all but ASCII letters, digits and ``_.-~`` percent-encoded ('/'
    too); '.' and '..' (which ZooKeeper refuses as node names) as well."""
    quoted = urllib.parse.quote(key, safe="")
    return quoted.replace(".", "%2E") if quoted in (".", "..") else quoted


def unescape(name: str) -> str:
    return urllib.parse.unquote(name)


def _number(revision: int) -> str:
    return f"{revision:010d}"


class ZkConfig:
    """The configuration store under one root of one ZooKeeper ensemble (see the module docstring)."""

    def __init__(
        self,
        hosts: str,
        root: str = DEFAULT_ROOT,
        *,
        keep: int = DEFAULT_KEEP,
        session_timeout: float = SESSION_TIMEOUT,
    ) -> None:
        try:
            from kazoo import exceptions
            from kazoo.client import KazooClient, KazooState
        except ImportError:  # pragma: no cover - depends on the install
            raise ImportError("zk:// config needs kazoo: pip install 'meshkit[zookeeper]'") from None
        self._errors: Any = exceptions
        self._states: Any = KazooState
        #: What a dropped connection, an expired or moved session raises: a watch resumes after them.
        self._lost: tuple[type[BaseException], ...] = (
            exceptions.ConnectionLoss,
            exceptions.SessionExpiredError,
            exceptions.SessionMovedError,
            exceptions.OperationTimeoutError,
        )
        self._where = hosts
        self._root = root.rstrip("/") or DEFAULT_ROOT
        self.keep = keep
        #: Every how many revisions the log is pruned.
        self.step = max(1, min(100, keep // 10))
        retry = {"max_tries": -1, "delay": 0.1, "backoff": 2, "max_delay": RECONNECT_MAX_PAUSE}
        self._zk: Any = KazooClient(hosts=hosts, timeout=session_timeout, connection_retry=retry)
        self._zk.add_listener(self._state_changed)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._starting: asyncio.Task[None] | None = None
        self._started = False
        #: True while kazoo's ``start`` runs in a worker thread (close() lets it finish first).
        self._connecting = False
        self._closing = False
        #: Set from kazoo's thread on every state change: waiters look again when it is set.
        self._changed: set[asyncio.Event] = set()
        self._pruning: asyncio.Task[None] | None = None
        #: The revision up to which the log is to be pruned (the last ``keep`` before the newest write).
        self._prune_to = 0

    # -- paths -------------------------------------------------------------------------------
    @property
    def _rev(self) -> str:
        return f"{self._root}/rev"

    @property
    def _compacted(self) -> str:
        return f"{self._root}/compacted"

    @property
    def _keys(self) -> str:
        return f"{self._root}/keys"

    def _log(self, revision: int) -> str:
        return f"{self._root}/log/{_number(revision)}"

    def _head(self, key: str) -> str:
        return f"{self._keys}/{escape(key)}"

    def _value(self, key: str, revision: int) -> str:
        return f"{self._head(key)}/{_number(revision)}"

    # -- kazoo's thread to the event loop ------------------------------------------------------
    _call_soon = staticmethod(call_soon)

    def _state_changed(self, state: Any) -> None:  # kazoo's thread
        self._call_soon(self._loop, self._wake_all)

    def _wake_all(self) -> None:
        for event in self._changed:
            event.set()

    def _send(self, start: Callable[..., Any], *args: Any, **kwargs: Any) -> asyncio.Future[Any]:
        """Send kazoo's ``start(*args)`` (an ``*_async`` method) now; its result, as a future here.
        Requests sent one after another are answered in that order (one session, one pipeline)."""
        return kazoo_future(start, *args, **kwargs)

    async def _settle(self, future: asyncio.Future[Any], *, missing: bool = False, writing: str = "") -> Any:
        """The result of a sent request: None for a missing node if ``missing``; a lost connection
        or refused credentials as ConfigUnavailable (``writing``: the key whose write that leaves
        undecided). Other errors of kazoo's are the caller's to handle."""
        try:
            return await future
        except self._errors.NoNodeError:
            if missing:
                return None
            raise
        except self._errors.ConnectionClosedError as exc:  # (a SessionExpiredError: first)
            raise self._translate(exc) from exc
        except self._lost as exc:
            undecided = f"; the write of {writing!r} may or may not have been applied" if writing else ""
            raise ConfigUnavailable(
                f"ZooKeeper at {self._where} cannot be reached ({exc!r}{undecided}); start it with: "
                "bash scripts/engines.sh"
            ) from exc

    def _closed(self) -> ConfigUnavailable:
        return ConfigUnavailable(f"the zk:// config store {self._where}{self._root} is closed")

    def _translate(self, exc: BaseException) -> ConfigUnavailable:
        if isinstance(exc, self._errors.AuthFailedError | self._errors.NoAuthError):
            return ConfigUnavailable(
                f"ZooKeeper at {self._where} refused our credentials for {self._root}: {exc!r}",
                code=StatusCode.UNAUTHENTICATED,
            )
        if isinstance(exc, self._errors.ConnectionClosedError | self._errors.ZookeeperStoppedError):
            return self._closed()
        return ConfigUnavailable(f"ZooKeeper at {self._where} could not serve the config request: {exc!r}")

    @contextlib.contextmanager
    def _boundary(self) -> Iterator[None]:
        """kazoo's own errors, translated (the contract: never the driver's type)."""
        try:
            yield
        except self._errors.KazooException as exc:
            raise self._translate(exc) from exc

    @contextlib.asynccontextmanager
    async def _operation(self, writing: str = "") -> AsyncIterator[None]:
        """One request of the backend's: kazoo's errors translated, and at most OPERATION_TIMEOUT."""
        try:
            async with asyncio.timeout(OPERATION_TIMEOUT):
                with self._boundary():
                    yield
        except TimeoutError:
            undecided = f"; the write of {writing!r} may or may not have been applied" if writing else ""
            raise ConfigUnavailable(
                f"ZooKeeper at {self._where} did not answer within {OPERATION_TIMEOUT:g}s{undecided}; "
                "start it with: bash scripts/engines.sh"
            ) from None

    def _disconnected(self, exc: ConfigUnavailable) -> bool:
        """Whether ``exc`` is a lost connection or session (or a step of a watch's that got no
        answer in time), which a watch rides out."""
        return isinstance(exc.__cause__, (*self._lost, TimeoutError))

    async def _step(self, step: Awaitable[T]) -> T:
        """One step of a watch, within OPERATION_TIMEOUT: kazoo holds a request made while it
        reconnects, and never answers one made while it resets an expired session."""
        try:
            async with asyncio.timeout(OPERATION_TIMEOUT):
                return await step
        except TimeoutError as exc:
            raise ConfigUnavailable(
                f"ZooKeeper at {self._where} did not answer within {OPERATION_TIMEOUT:g}s; "
                "start it with: bash scripts/engines.sh"
            ) from exc

    # -- the session ----------------------------------------------------------------------------
    async def _ensure_started(self) -> None:
        """Open the session once. The connecting runs in a thread that cancelling cannot stop, so it
        is one shared task: a cancelled caller leaves it to finish, and the next caller awaits it."""
        if self._closing:
            raise self._closed()
        self._loop = asyncio.get_running_loop()
        starting = self._starting
        if starting is None or (starting.done() and (starting.cancelled() or starting.exception() is not None)):
            starting = self._starting = self._loop.create_task(self._start())
            # (A caller cancelled meanwhile, or close(), leaves its outcome unread: not an error to log.)
            starting.add_done_callback(lambda t: t.cancelled() or t.exception())
        try:
            await asyncio.shield(starting)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if starting.cancelled() and self._closing and not (current and current.cancelling()):
                raise self._closed() from None  # (close() gave up on the start, this caller is not cancelled)
            raise

    async def _start(self) -> None:
        loop = asyncio.get_running_loop()
        self._connecting = True
        try:
            await loop.run_in_executor(None, self._zk.start, CONNECT_TIMEOUT)
        except Exception as exc:
            await self._shut()
            raise ConfigUnavailable(
                f"ZooKeeper at {self._where} cannot be reached (no session within {CONNECT_TIMEOUT:g}s: "
                f"{exc!r}); start it with: bash scripts/engines.sh"
            ) from exc
        finally:
            self._connecting = False
        try:
            if self._closing:
                raise self._closed()
            async with asyncio.timeout(OPERATION_TIMEOUT):
                await self._layout()
            if self._closing:  # (close() came meanwhile: leave no session behind it)
                raise self._closed()
        except Exception as exc:
            await self._shut()
            if isinstance(exc, TimeoutError):
                raise ConfigUnavailable(
                    f"ZooKeeper at {self._where} did not answer within {OPERATION_TIMEOUT:g}s while the store's "
                    f"nodes under {self._root} were made; start it with: bash scripts/engines.sh"
                ) from exc
            if isinstance(exc, self._errors.KazooException):
                raise self._translate(exc) from exc
            raise
        self._started = True

    async def _layout(self) -> None:
        """The store's nodes, made by whichever opener comes first (the others find them)."""
        for path in (self._rev, f"{self._root}/log", self._keys):
            await self._settle(self._send(self._zk.ensure_path_async, path))
        with contextlib.suppress(self._errors.NodeExistsError):
            await self._settle(self._send(self._zk.create_async, self._compacted, b"0"))

    async def _shut(self) -> None:
        """Stop the client and free its sockets (a stopped client still holds them), whatever state
        it is in; what kazoo raises doing so (WriterNotClosedException: its writer thread would not
        stop) is logged, as the store is given up either way."""
        loop = asyncio.get_running_loop()
        for step in (self._zk.stop, self._zk.close):
            try:
                await loop.run_in_executor(None, step)
            except Exception as exc:  # noqa: BLE001 - nothing to do but go on closing
                log.warning(
                    "the ZooKeeper client of %s%s did not %s cleanly: %r", self._where, self._root, step.__name__, exc
                )

    async def _ready(self) -> None:
        """Started and connected now, or ConfigUnavailable after CONNECT_TIMEOUT without it (kazoo
        would hold a request made while it reconnects until it has), or at once if closed."""
        await self._ensure_started()
        if self._zk.state == self._states.CONNECTED and not self._closing:
            return
        changed = asyncio.Event()
        self._changed.add(changed)
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                while True:
                    changed.clear()
                    if self._closing:
                        raise self._closed()
                    if self._zk.state == self._states.CONNECTED:
                        return
                    await changed.wait()
        except TimeoutError:
            raise ConfigUnavailable(
                f"ZooKeeper at {self._where} is not connected ({self._zk.state} for {CONNECT_TIMEOUT:g}s); "
                "start it with: bash scripts/engines.sh"
            ) from None
        finally:
            self._changed.discard(changed)

    def _sync(self) -> asyncio.Future[Any]:
        """A sync, sent before reads: the server answers them once it has caught up with the leader.
        Await it (before the reads: it is answered first): if it failed, or was dropped with a
        session, the reads after it may have gone, unsynced, to another server in a new session."""
        return self._send(self._zk.sync_async, self._root)

    async def _read(self, start: Callable[..., Any], *args: Any, missing: bool = False) -> Any:
        """``start(*args)`` (a read) after a sync, in one pipeline: its result, up to date."""
        sync = self._sync()
        reading = self._send(start, *args)
        await self._settle(sync)
        return await self._settle(reading, missing=missing)

    def _gone(self) -> ConfigUnavailable:
        return ConfigUnavailable(
            f"the zk:// config store {self._where}{self._root} is gone ({self._rev} was deleted); open it again"
        )

    async def _revision(self, watch: Callable[[Any], None] | None = None) -> int:
        stat = await self._read(self._zk.exists_async, self._rev, watch)
        if stat is None:
            raise self._gone()
        return int(stat.version)

    async def _get_many(self, paths: list[str]) -> list[tuple[bytes, Any] | None]:
        """``(data, stat)`` of each node (None where there is none), read BATCH at a time, each
        batch after a sync (the session may have changed since the last one)."""
        found: list[tuple[bytes, Any] | None] = []
        for start in range(0, len(paths), BATCH):
            sync = self._sync()
            sent = [self._send(self._zk.get_async, path) for path in paths[start : start + BATCH]]
            await self._settle(sync)
            for future in sent:
                found.append(await self._settle(future, missing=True))
        return found

    async def _delete_many(self, paths: list[str]) -> None:
        """Delete each node there is (BATCH at a time)."""
        for start in range(0, len(paths), BATCH):
            sent = [self._send(self._zk.delete_async, path) for path in paths[start : start + BATCH]]
            for future in sent:
                with contextlib.suppress(self._errors.NoNodeError, self._errors.NotEmptyError):
                    await self._settle(future)

    # -- decoding ----------------------------------------------------------------------------
    def _bad_node(self, path: str, exc: Exception) -> ConfigUnavailable:
        return ConfigUnavailable(
            f"the ZooKeeper node {path} is not a meshkit config node ({exc}): is {self._root} another program's?"
        )

    def _read_head(self, path: str, data: bytes) -> _Head:
        try:
            return _decode_head(data)
        except msgspec.DecodeError as exc:
            raise self._bad_node(path, exc) from exc

    def _read_logged(self, path: str, data: bytes) -> _Logged:
        try:
            return _decode_logged(data)
        except msgspec.DecodeError as exc:
            raise self._bad_node(path, exc) from exc

    def _read_value(self, path: str, data: bytes) -> bytes | None:
        tag = data[:1]
        if tag == PUT:
            return data[1:]
        if tag == DELETED:
            return None
        raise self._bad_node(path, ValueError(f"it begins with {data[:8]!r}"))

    def _compacted_error(self, revision: int, since: int) -> Compacted:
        return Compacted(
            f"revision {revision} is no longer kept (the zk:// store {self._root} keeps its last {self.keep}; "
            f"asked for those after {since}); list the prefix again and watch from the listing's revision"
        )

    async def _changes(self, prefix: str, after: int, upto: int, since: int) -> Changes:
        """The changes under ``prefix`` of revisions ``after + 1 .. upto`` (at most the store's
        revision), in order; Compacted if the log no longer has one of them."""
        revisions = range(after + 1, upto + 1)
        logged: list[tuple[int, _Logged]] = []
        for revision, found in zip(revisions, await self._get_many([self._log(r) for r in revisions]), strict=True):
            if found is None:
                raise self._compacted_error(revision, since)
            entry = self._read_logged(self._log(revision), found[0])
            if entry.key.startswith(prefix):
                logged.append((revision, entry))
        puts = [(revision, entry.key) for revision, entry in logged if not entry.deleted]
        values: dict[int, bytes | None] = {}
        for (revision, key), found in zip(
            puts, await self._get_many([self._value(key, revision) for revision, key in puts]), strict=True
        ):
            if found is None:
                raise self._compacted_error(revision, since)
            values[revision] = self._read_value(self._value(key, revision), found[0])
        return [Change(entry.key, values.get(revision), revision) for revision, entry in logged]

    # -- reading -----------------------------------------------------------------------------
    async def get(self, key: str) -> Entry | None:
        async with self._operation():
            await self._ready()
            missing = 0
            while True:
                found = await self._read(self._zk.get_async, self._head(key), missing=True)
                if found is None:
                    return None
                head = self._read_head(self._head(key), found[0])
                if head.deleted:
                    return None
                path = self._value(key, head.rev)
                value = await self._read(self._zk.get_async, path, missing=True)
                if value is None:
                    if missing == head.rev:  # twice: not a race, the node is gone
                        raise self._bad_node(path, ValueError("the key's head names it, but it does not exist"))
                    missing = head.rev
                    continue  # overwritten and pruned between the two reads: read the head again
                data = self._read_value(path, value[0])
                if data is None:
                    raise self._bad_node(path, ValueError("the head says a put, the value node says a deletion"))
                return Entry(key, data, head.rev)

    async def list(self, prefix: str) -> Listing:
        async with self._operation():
            await self._ready()
            for _ in range(LIST_ATTEMPTS):
                listing = await self._list_once(prefix)
                if listing is not None:
                    return listing
            raise ConfigUnavailable(
                f"the zk:// store {self._where}{self._root} pruned the revisions written while {prefix!r} was "
                f"listed, {LIST_ATTEMPTS} times: more than {self.keep} writes per listing (raise ?keep=)"
            )

    async def _list_once(self, prefix: str) -> Listing | None:
        """The listing (see the module docstring), or None if a node it needed was pruned meanwhile.
        Every read is after a sync of its own: the session may change between any two."""
        before = await self._revision()
        names = await self._read(self._zk.get_children_async, self._keys)
        keys = sorted(key for key in map(unescape, names) if key.startswith(prefix))
        heads: list[tuple[str, int]] = []
        for key, found in zip(keys, await self._get_many([self._head(k) for k in keys]), strict=True):
            if found is not None:
                head = self._read_head(self._head(key), found[0])
                if not head.deleted:
                    heads.append((key, head.rev))
        entries: dict[str, Entry] = {}
        for (key, revision), found in zip(
            heads, await self._get_many([self._value(k, r) for k, r in heads]), strict=True
        ):
            value = None if found is None else self._read_value(self._value(key, revision), found[0])
            if value is not None:  # (None: overwritten and pruned meanwhile; the replay below has it)
                entries[key] = Entry(key, value, revision)
        after = await self._revision()  # (synced: a lagging server would say an older one than before)
        if after < before:
            raise self._gone()
        try:
            replay = await self._changes(prefix, before, after, before) if after > before else []
        except Compacted:
            return None
        for change in replay:  # the writes that happened while we read, in order
            if change.value is None:
                entries.pop(change.key, None)
            else:
                entries[change.key] = Entry(change.key, change.value, change.revision)
        return Listing(sorted(entries.values(), key=lambda e: e.key), after)

    async def history(self, key: str) -> Changes:
        async with self._operation():
            await self._ready()
            names = await self._read(self._zk.get_children_async, self._head(key), missing=True)
            revisions = sorted(int(name) for name in names or () if name.isdigit())
            changes: list[Change] = []
            paths = [self._value(key, r) for r in revisions]
            for revision, path, found in zip(revisions, paths, await self._get_many(paths), strict=True):
                if found is not None:  # (None: pruned since the listing; the reads are synced, not lagging)
                    changes.append(Change(key, self._read_value(path, found[0]), revision))
            return changes

    # -- writing -----------------------------------------------------------------------------
    async def put(self, key: str, value: bytes, expect: int | None) -> int:
        if len(value) > MAX_VALUE:
            raise BadConfigRequest(
                f"the value of config key {key!r} is {len(value):,} bytes, over the {MAX_VALUE:,} a zk:// store "
                "can write (ZooKeeper refuses requests over its jute.maxbuffer, 1 MiB by default)",
                code=StatusCode.RESOURCE_EXHAUSTED,
            )
        revision = await self._write(key, value, expect)
        assert revision is not None  # a put always writes (or raises Conflict)
        return revision

    async def delete(self, key: str, expect: int | None) -> int | None:
        return await self._write(key, None, expect)

    async def _write(self, key: str, value: bytes | None, expect: int | None) -> int | None:
        """One transaction (see the module docstring), tried again while other writers win the
        revision first; None for a deletion of a key that is absent."""
        head_path = self._head(key)
        async with self._operation(writing=key):
            await self._ready()
            while True:
                sync = self._sync()
                counter = self._send(self._zk.exists_async, self._rev)
                reading = self._send(self._zk.get_async, head_path)
                await self._settle(sync)
                stat = await self._settle(counter)
                found = await self._settle(reading, missing=True)
                if stat is None:
                    raise self._gone()
                head = None if found is None else self._read_head(head_path, found[0])
                current = head.rev if head is not None and not head.deleted else 0
                if expect is not None and current != expect:
                    where = f"at revision {current}" if current else "absent"
                    wanted = f"revision {expect}" if expect else "absent"
                    raise Conflict(f"config key {key!r} is {where}, not {wanted} as expected", current=current)
                if value is None and not current:
                    return None
                version = int(stat.version)
                if not 0 <= version < LAST_REVISION:
                    raise ConfigUnavailable(
                        f"the zk:// store {self._where}{self._root} is at revision {version}, and its counter (a "
                        f"32-bit ZooKeeper node version) goes no further than {LAST_REVISION}: revision counter "
                        "exhausted; use a new root",
                        code=StatusCode.RESOURCE_EXHAUSTED,
                    )
                revision = version + 1
                tx = self._zk.transaction()
                tx.set_data(self._rev, str(revision).encode(), version=version)
                written = _encode(_Head(revision, deleted=value is None))
                if found is None:
                    tx.create(head_path, written)
                else:
                    tx.set_data(head_path, written, version=found[1].version)
                tx.create(self._value(key, revision), DELETED if value is None else PUT + value)
                tx.create(self._log(revision), _encode(_Logged(key, deleted=value is None)))
                results = await self._settle(self._send(tx.commit_async), writing=key)
                failed = [
                    (index, result)
                    for index, result in enumerate(results)
                    if isinstance(result, Exception)
                    and not isinstance(result, self._errors.RolledBackError | self._errors.RuntimeInconsistency)
                ]
                if not failed:
                    self._after_write(revision)
                    return revision
                index, error = failed[0]
                if index == 0 and isinstance(error, self._errors.BadVersionError):
                    continue  # another write took the revision: read again
                if index == 1 and isinstance(
                    error, self._errors.BadVersionError | self._errors.NodeExistsError | self._errors.NoNodeError
                ):
                    continue  # the key changed (or its old head was pruned) since we read it
                if index == 0 and isinstance(error, self._errors.NoNodeError):
                    raise self._gone()
                raise ConfigUnavailable(
                    f"ZooKeeper at {self._where} refused the write of config key {key!r} under {self._root}: {error!r}"
                )

    # -- pruning -----------------------------------------------------------------------------
    def _after_write(self, revision: int) -> None:
        """The writer of every ``step``-th revision prunes the log behind the last ``keep``, in the
        background; while a pruning runs, later ones only raise its target."""
        if revision <= self.keep or revision % self.step or self._closing:
            return
        self._prune_to = max(self._prune_to, revision - self.keep)
        if self._pruning is None or self._pruning.done():
            self._pruning = asyncio.get_running_loop().create_task(self._prune())

    async def _prune(self) -> None:
        pruned = 0
        while pruned < self._prune_to and not self._closing:
            upto = self._prune_to
            try:
                with self._boundary():
                    await self._prune_upto(upto)
            except Exception as exc:  # noqa: BLE001 - the next pruning starts again from the mark
                log.warning("pruning the config log of %s%s up to %d failed: %s", self._where, self._root, upto, exc)
                return
            pruned = upto

    async def _prune_upto(self, upto: int) -> None:
        """Prune revisions from the mark up to ``upto``, raising the mark after every batch (so a
        pruning cut short leaves nothing the next one does not find)."""
        found = await self._read(self._zk.get_async, self._compacted)
        for after in range(int(found[0] or b"0"), upto, BATCH):
            last = min(after + BATCH, upto)
            revisions = range(after + 1, last + 1)
            logged = await self._get_many([self._log(r) for r in revisions])
            keys = {self._read_logged(self._log(r), f[0]).key for r, f in zip(revisions, logged, strict=True) if f}
            for key in sorted(keys):
                await self._prune_key(key, last)
            await self._delete_many([self._log(r) for r in revisions])
            await self._raise_mark(last)

    async def _raise_mark(self, upto: int) -> None:
        """``{root}/compacted`` to ``upto``, unless it is there already (prunings may overlap)."""
        while True:
            data, stat = await self._read(self._zk.get_async, self._compacted)
            if int(data or b"0") >= upto:
                return
            try:
                await self._settle(self._send(self._zk.set_async, self._compacted, str(upto).encode(), stat.version))
                return
            except self._errors.BadVersionError:
                continue  # another pruner raised it meanwhile: look again

    async def _prune_key(self, key: str, upto: int) -> None:
        """Delete the key's value nodes up to ``upto``, but for its current one; and the key itself
        if it was deleted by then (the head and its last node at once, if nobody wrote it since)."""
        head_path = self._head(key)
        sync = self._sync()  # (a lagging server's head and children could name a current value as old)
        reading = self._send(self._zk.get_async, head_path)
        listing = self._send(self._zk.get_children_async, head_path)
        await self._settle(sync)
        found = await self._settle(reading, missing=True)
        names = await self._settle(listing, missing=True)
        if found is None or names is None:
            return
        head = self._read_head(head_path, found[0])
        old = [int(n) for n in names if n.isdigit() and int(n) <= upto and int(n) != head.rev]
        await self._delete_many([self._value(key, r) for r in old])
        if head.deleted and head.rev <= upto:
            tx = self._zk.transaction()
            tx.delete(self._value(key, head.rev))
            tx.delete(head_path, version=found[1].version)
            await self._settle(self._send(tx.commit_async))  # (failed: written again meanwhile)

    # -- watching ----------------------------------------------------------------------------
    async def watch(self, prefix: str, since: int) -> AsyncIterator[Change]:
        with self._boundary():
            await self._ensure_started()
            loop = asyncio.get_running_loop()
            woken = asyncio.Event()

            def fired(event: Any) -> None:  # kazoo's thread (one callable: kazoo keeps it once)
                self._call_soon(loop, woken.set)

            seen = since
            self._changed.add(woken)
            try:
                while True:
                    woken.clear()
                    try:
                        # Each step synced (a lagging server would say an older revision than the since
                        # given, or miss log nodes) and bounded (kazoo may never answer: see _step).
                        top = await self._step(self._revision(fired))
                        if seen > top:
                            raise Compacted(
                                f"the zk:// store {self._root} is at revision {top}, before {seen}: it lost "
                                "revisions (deleted and made again?); list the prefix again and watch from the "
                                "listing's revision"
                            )
                        while seen < top:
                            upto = min(top, seen + BATCH)
                            for change in await self._step(self._changes(prefix, seen, upto, since)):
                                yield change
                            seen = upto
                    except ConfigUnavailable as exc:
                        if self._closing:
                            raise self._closed() from exc
                        if not self._disconnected(exc):
                            raise
                        log.warning(
                            "config watch of %r lost ZooKeeper (%s); resuming after revision %d", prefix, exc, seen
                        )
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(RECHECK):
                            await woken.wait()
            finally:
                self._changed.discard(woken)

    async def close(self) -> None:
        """Let a pruning under way finish (CLEANUP_WAIT at most, then cancel it), stop the client and
        free its sockets; requests waiting for a connection fail at once, saying the store is closed."""
        self._closing = True
        self._wake_all()
        pruning = self._pruning
        if pruning is not None and not pruning.done():
            await asyncio.wait({pruning}, timeout=CLEANUP_WAIT)
            pruning.cancel()
            await asyncio.gather(pruning, return_exceptions=True)
        starting = self._starting
        if starting is not None and not starting.done() and self._connecting:
            # kazoo's start (CONNECT_TIMEOUT at most) is best not stopped from another thread midway.
            await asyncio.wait({starting}, timeout=CLEANUP_WAIT)
        self._started = False
        await self._shut()  # (also fails the requests of a start making the store's nodes)
        if starting is not None and not starting.done():
            await asyncio.wait({starting}, timeout=CLEANUP_WAIT)
            if not self._connecting:  # (a request kazoo never answers: give up on it; a thread cannot be)
                starting.cancel()
                await asyncio.gather(starting, return_exceptions=True)
        self._wake_all()


def _root(url: BackendURL) -> str:
    """The URL's path as the store's root: no path (or "/") is the default; one trailing '/' is
    dropped; the rest is checked as written (``//`` is an empty name, not the default)."""
    path = url.path
    if path in ("", "/"):
        return DEFAULT_ROOT
    root = path[:-1] if path.endswith("/") else path
    segments = root.split("/")[1:]
    if "%" in root:
        raise BadConfigRequest(
            f"URL {url.url!r}: the store's root {url.path!r} has a '%': a zk:// root names its nodes as written, "
            "not percent-decoded, so it may not have one"
        )
    bad = [s for s in segments if s in ("", ".", "..") or not s.isprintable() or any(c.isspace() for c in s)]
    if bad or segments[0] == "zookeeper":
        raise BadConfigRequest(
            f"URL {url.url!r}: the store's root {url.path!r} is not a ZooKeeper path of named nodes "
            "(zk://127.0.0.1:2181/meshkit/config; /zookeeper is the server's own)"
        )
    return root


def open_zk(url: BackendURL) -> ZkConfig:
    """``zk://h1:2181,h2:2181[/root][?keep=N]`` (root /meshkit/config; the log keeps the last N
    revisions, 10,000 by default)."""
    if not url.netloc:
        raise BadConfigRequest(f"URL {url.url!r}: zk:// needs HOST:PORT of a server (zk://127.0.0.1:2181)")
    if "@" in url.netloc:
        raise BadConfigRequest(f"URL {url.url!r}: zk:// takes no credentials (user:password@)")
    # (BackendURL's query drops options given empty, ``?keep=``: read it again keeping them, to refuse them.)
    query = urllib.parse.parse_qs(url.parts.query, keep_blank_values=True)
    unknown = sorted(set(query) - set(OPTIONS))
    if unknown:
        raise BadConfigRequest(f"URL {url.url!r}: unknown option {', '.join(unknown)} (known: {', '.join(OPTIONS)})")
    if any(not value.strip() for value in query.get("keep", ())):
        raise BadConfigRequest(f"URL {url.url!r}: keep is a number of revisions (1 or more), got an empty value")
    try:
        keep = url.number("keep", DEFAULT_KEEP)
    except ValueError as exc:
        raise BadConfigRequest(str(exc)) from None
    if not (math.isfinite(keep) and keep >= 1 and keep == int(keep)):
        raise BadConfigRequest(f"URL {url.url!r}: keep is a number of revisions (1 or more), got {keep:g}")
    root = _root(url)
    try:
        return ZkConfig(url.netloc, root, keep=int(keep))
    except ValueError as exc:
        raise BadConfigRequest(f"URL {url.url!r}: {exc}") from None
