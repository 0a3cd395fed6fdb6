"""``etcd://h1:2379,h2:2379[/prefix]``: locks and elections on etcd v3 (CP, Raft), as etcd's own
``concurrency`` package does them, over the JSON gateway (:mod:`meshkit.discovery.etcd_http`).

One acquire is one lease and one key. The lease is granted for the TTL in whole seconds (rounded
up; etcd raises a TTL under its minimum, 2 s with the default election timeout, to that minimum).
The key ``{prefix}/{escaped name}/{lease id in hex}`` is created in a transaction that requires it
not to exist, attached to the lease, holding the owner and the value. The keys of a name, ordered
by their create revision, are its queue: the lowest holds the name. A waiter watches only the key
just below its own (no herd: one release wakes one waiter), and when that one is deleted it looks
again, in one transaction that also checks that its own key still exists with the revision it was
created at, so a waiter whose lease ran out while it waited (etcd issue #12334) is told
:class:`~meshkit.errors.LockLost` instead of being granted a key that is gone. While waiting, the
lease is kept alive every lease/3 seconds; if etcd says it is gone, the wait ends the same way.

The fencing token is our key's create revision: etcd's revision grows with every write in the
cluster, and a holder's key is always created after every earlier holder's (it was either created
after their grant or sat above them in the queue), so tokens of one name strictly increase.

``renew`` is a lease keepalive (False when etcd says the lease is gone, or our key is); ``release``
deletes our key if it is still ours and revokes the lease. A waiter that is cancelled or times out
revokes its lease, which deletes its key: nothing stays behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import urllib.parse
from collections.abc import AsyncIterator, Awaitable
from typing import TYPE_CHECKING, Any, TypeVar

from meshkit.coord.backend import Grant, Holder
from meshkit.coord.record import Record, decode_record, encode_record
from meshkit.discovery.etcd_http import (
    EtcdError,
    EtcdHTTP,
    EtcdUnreachable,
    b64,
    explain,
    prefix_end,
    unb64,
)
from meshkit.errors import EngineUnavailable, LockLost, LockTimeout, StatusCode

if TYPE_CHECKING:
    from meshkit.schemes import BackendURL

LOCKS_PREFIX = "/meshkit/locks"
ELECTIONS_PREFIX = "/meshkit/elections"
#: How long a cancelled waiter or a release waits for its lease to be revoked before it returns
#: (the revoke goes on in the background; the lease expires by itself in any case).
CLEANUP_WAIT = 5.0

T = TypeVar("T")


def escape(name: str) -> str:
    """A name as one key segment: '/' and '%' (and anything not ASCII) percent-encoded."""
    return urllib.parse.quote(name, safe="")


class EtcdLocks:
    """Locks and elections on one etcd cluster (one HTTP client; every watch is a stream of it)."""

    def __init__(self, endpoints: str, prefix: str = LOCKS_PREFIX) -> None:
        self._etcd = EtcdHTTP(endpoints, what="etcd:// locks")
        self._where = endpoints
        self._prefix = prefix.rstrip("/") or LOCKS_PREFIX
        self._cleanups: set[asyncio.Task[None]] = set()

    # -- the engine boundary ----------------------------------------------------------------
    async def _call(self, request: Awaitable[T]) -> T:
        """``request``, with etcd's failures translated to what a lock user catches."""
        try:
            return await request
        except EtcdError as exc:
            raise self._unavailable(exc) from exc

    def _unavailable(self, exc: EtcdError) -> EngineUnavailable:
        message, refused = explain(exc, self._where, "lock")
        return EngineUnavailable(message, code=StatusCode.UNAUTHENTICATED) if refused else EngineUnavailable(message)

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self._call(self._etcd.post(path, body))

    def _dir(self, name: str) -> str:
        return f"{self._prefix}/{escape(name)}/"

    async def _keepalive(self, lease: int) -> bool:
        """Whether etcd still has ``lease`` (and now counts its TTL from now)."""
        result = (await self._post("lease/keepalive", {"ID": lease})).get("result", {})
        return int(result.get("TTL", 0)) > 0

    async def _revoke(self, lease: int) -> None:
        try:
            await self._etcd.post("lease/revoke", {"ID": lease})
        except Exception:  # noqa: BLE001 - gone already, etcd unreachable, the client closed:
            pass  # the lease then expires by itself

    async def _discard(self, lease: int) -> None:
        """Revoke ``lease`` (deleting its key), waiting a bounded time even if we are cancelled."""
        task = asyncio.get_running_loop().create_task(self._revoke(lease))
        self._track(task)
        await asyncio.wait({task}, timeout=CLEANUP_WAIT)

    def _track(self, task: asyncio.Task[None]) -> None:
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)

    # -- acquire ------------------------------------------------------------------------------
    async def acquire(self, name: str, owner: str, ttl: float, wait: float | None, value: bytes = b"") -> Grant:
        loop = asyncio.get_running_loop()
        sent_at = loop.time()  # the lease runs from no earlier than this
        granted = await self._grant(max(1, math.ceil(ttl)))
        lease, lease_ttl = int(granted["ID"]), int(granted["TTL"])
        key = f"{self._dir(name)}{lease:x}"
        try:
            created = await self._post(
                "kv/txn",
                {
                    "compare": [{"target": "CREATE", "result": "EQUAL", "key": b64(key), "create_revision": 0}],
                    "success": [
                        {
                            "request_put": {
                                "key": b64(key),
                                "value": b64(encode_record(Record(owner, value))),
                                "lease": lease,
                            }
                        }
                    ],
                },
            )
            if not created.get("succeeded"):
                raise EngineUnavailable(f"etcd at {self._where}: the key of a new lease, {key}, exists already")
            revision = int(created["header"]["revision"])
            if wait == 0:
                if await self._predecessor(name, key, lease, revision) is not None:
                    raise LockTimeout(f"lock {name!r} is held (etcd {self._where})")
            else:
                try:
                    async with asyncio.timeout(wait):
                        if await self._wait_turn(name, key, lease, revision, lease_ttl):
                            # It waited: the lease was last renewed some time ago. Renew it once
                            # more, so the holder's TTL counts from now (and we know it is alive).
                            sent_at = loop.time()
                            if not await self._keepalive(lease):
                                raise LockLost(f"the lease of the waiter for {name!r} ended as it was granted")
                except TimeoutError:
                    raise LockTimeout(f"lock {name!r} was not granted within {wait:g}s (etcd {self._where})") from None
        except BaseException:
            await self._discard(lease)
            raise
        return Grant(name, owner, revision, ttl, sent_at=sent_at, value=value, handle=(key, lease, revision))

    async def _grant(self, ttl: int) -> dict[str, Any]:
        """A new lease, revoked again if we are cancelled while etcd grants it."""
        granting = asyncio.get_running_loop().create_task(self._post("lease/grant", {"TTL": ttl}))
        try:
            return await asyncio.shield(granting)
        except asyncio.CancelledError:
            cleanup = asyncio.get_running_loop().create_task(self._revoke_granted(granting))
            self._track(cleanup)
            await asyncio.wait({cleanup}, timeout=CLEANUP_WAIT)
            raise

    async def _revoke_granted(self, granting: asyncio.Task[dict[str, Any]]) -> None:
        with contextlib.suppress(Exception):
            await self._revoke(int((await granting)["ID"]))

    async def _predecessor(self, name: str, key: str, lease: int, revision: int) -> tuple[str, int] | None:
        """The key just below ours in the name's queue and the revision read at (None: ours is
        lowest), read in one transaction that requires our key to be still ours (else LockLost)."""
        prefix = self._dir(name)
        answer = await self._post(
            "kv/txn",
            {
                "compare": [
                    {"target": "CREATE", "result": "EQUAL", "key": b64(key), "create_revision": revision},
                    {"target": "LEASE", "result": "EQUAL", "key": b64(key), "lease": lease},
                ],
                "success": [
                    {
                        "request_range": {
                            "key": b64(prefix),
                            "range_end": prefix_end(prefix),
                            "sort_order": "DESCEND",
                            "sort_target": "CREATE",
                            "max_create_revision": revision - 1,
                            "limit": 1,
                            "keys_only": True,
                        }
                    }
                ],
            },
        )
        if not answer.get("succeeded"):
            raise LockLost(f"the lease of the waiter for {name!r} ended while it waited (etcd {self._where})")
        kvs = answer["responses"][0]["response_range"].get("kvs", [])
        if not kvs:
            return None
        return unb64(kvs[0]["key"]).decode(), int(answer["header"]["revision"])

    async def _wait_turn(self, name: str, key: str, lease: int, revision: int, lease_ttl: int) -> bool:
        """Return once our key is the lowest of the name's queue: True if it had to wait for that."""
        waited = False
        keeper = asyncio.get_running_loop().create_task(self._keep_waiting(name, lease, lease_ttl))
        watcher: asyncio.Task[None] | None = None
        try:
            while (found := await self._predecessor(name, key, lease, revision)) is not None:
                waited = True
                watcher = asyncio.get_running_loop().create_task(self._deleted(*found))
                await asyncio.wait({watcher, keeper}, return_when=asyncio.FIRST_COMPLETED)
                if keeper.done():
                    keeper.result()  # raises why the wait cannot go on
                watcher.result()
            return waited
        finally:
            for task in (keeper, watcher):
                if task is not None:
                    task.cancel()
            await asyncio.gather(keeper, *([watcher] if watcher else []), return_exceptions=True)

    async def _keep_waiting(self, name: str, lease: int, lease_ttl: int) -> None:
        """Keep a waiter's lease alive; return (LockLost) once etcd says it is gone."""
        while True:
            await asyncio.sleep(lease_ttl / 3)
            if not await self._keepalive(lease):
                raise LockLost(f"the lease of the waiter for {name!r} ended while it waited (etcd {self._where})")

    async def _deleted(self, key: str, revision: int) -> None:
        """Return once ``key`` is deleted at a revision after ``revision`` (or history was compacted)."""
        body = {"create_request": {"key": b64(key), "start_revision": revision + 1, "filters": ["NOPUT"]}}

        async def follow() -> None:
            async with self._etcd.stream("watch", body) as messages:
                async for result in messages:
                    if result.get("events") or result.get("compact_revision") or result.get("canceled"):
                        return  # deleted, or we cannot know: look again
            raise EtcdUnreachable(f"etcd at {self._etcd.current} ended the watch of {key}")

        await self._call(follow())

    # -- renew, release -------------------------------------------------------------------------
    async def renew(self, grant: Grant) -> bool:
        key, lease, revision = grant.handle
        if not await self._keepalive(lease):
            return False
        found = await self._post("kv/range", {"key": b64(key), "keys_only": True})
        kvs = found.get("kvs", [])
        return bool(kvs) and int(kvs[0]["create_revision"]) == revision

    async def release(self, grant: Grant) -> bool:
        key, lease, revision = grant.handle
        try:
            answer = await self._post(
                "kv/txn",
                {
                    "compare": [
                        {"target": "CREATE", "result": "EQUAL", "key": b64(key), "create_revision": revision},
                        {"target": "LEASE", "result": "EQUAL", "key": b64(key), "lease": lease},
                    ],
                    "success": [{"request_delete_range": {"key": b64(key)}}],
                },
            )
        finally:
            await self._discard(lease)
        return bool(answer.get("succeeded"))

    # -- elections ------------------------------------------------------------------------------
    async def _queue(self, name: str) -> tuple[dict[str, tuple[int, Holder]], int]:
        """Every key of the name's queue: key -> (create revision, holder it would be), and the revision."""
        prefix = self._dir(name)
        found = await self._post("kv/range", {"key": b64(prefix), "range_end": prefix_end(prefix)})
        queue = {unb64(kv["key"]).decode(): _entry(kv) for kv in found.get("kvs", [])}
        return queue, int(found["header"]["revision"])

    async def holder(self, name: str) -> Holder | None:
        prefix = self._dir(name)
        found = await self._post(
            "kv/range",
            {
                "key": b64(prefix),
                "range_end": prefix_end(prefix),
                "sort_order": "ASCEND",
                "sort_target": "CREATE",
                "limit": 1,
            },
        )
        kvs = found.get("kvs", [])
        return _entry(kvs[0])[1] if kvs else None

    async def watch(self, name: str) -> AsyncIterator[Holder | None]:
        prefix = self._dir(name)
        last: Holder | str | None = "nothing yet"
        while True:
            queue, revision = await self._queue(name)
            if (now := _lowest(queue)) != last:
                yield now
                last = now
            body = {
                "create_request": {"key": b64(prefix), "range_end": prefix_end(prefix), "start_revision": revision + 1}
            }
            try:
                async with self._etcd.stream("watch", body) as messages:
                    async for result in messages:
                        if result.get("compact_revision") or result.get("canceled"):
                            break  # history gone: list again
                        for event in result.get("events", []):
                            kv = event["kv"]
                            if event.get("type") == "DELETE":
                                queue.pop(unb64(kv["key"]).decode(), None)
                            else:
                                queue[unb64(kv["key"]).decode()] = _entry(kv)
                        if (now := _lowest(queue)) != last:
                            yield now
                            last = now
                    else:
                        raise EtcdUnreachable(f"etcd at {self._etcd.current} ended the watch of {name!r}")
            except EtcdError as exc:
                raise self._unavailable(exc) from exc

    async def close(self) -> None:
        if self._cleanups:
            await asyncio.wait(set(self._cleanups), timeout=CLEANUP_WAIT)
        await self._etcd.aclose()


def _entry(kv: dict[str, Any]) -> tuple[int, Holder]:
    record = decode_record(unb64(kv.get("value", "")))
    revision = int(kv["create_revision"])
    return revision, Holder(record.owner, record.value, revision)


def _lowest(queue: dict[str, tuple[int, Holder]]) -> Holder | None:
    return min(queue.values(), key=lambda entry: entry[0])[1] if queue else None


def open_etcd_locks(url: BackendURL) -> EtcdLocks:
    """``etcd://h1:2379,h2:2379[/prefix]`` for :class:`meshkit.coord.Locks` (prefix /meshkit/locks)."""
    return EtcdLocks(url.netloc, prefix=url.path or LOCKS_PREFIX)


def open_etcd_elections(url: BackendURL) -> EtcdLocks:
    """``etcd://h1:2379,h2:2379[/prefix]`` for elections (prefix /meshkit/elections)."""
    return EtcdLocks(url.netloc, prefix=url.path or ELECTIONS_PREFIX)
