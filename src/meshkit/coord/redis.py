"""Locks and elections on Redis: one hash per held name, granted, renewed and released by Lua.

``redis://[user:password@]host:port/db?prefix=meshkit:coord:`` (``rediss://`` for TLS). Three
things per name, under the prefix (``lock:``, ``fence:``, ``chan:`` keep them apart whatever the
name holds):

- ``{prefix}lock:{name}``, a hash (owner, value, token) that expires with the lease (PEXPIRE). It
  exists only while someone holds the name.
- ``{prefix}fence:{name}``, the fence counter, which never expires: the grant script takes the
  token from it in the same atomic step as the grant, ``max(last + 1, server clock in µs)``, so
  tokens keep growing across a restart that lost the counter (see ``lua/grant.lua``).
- ``{prefix}chan:{name}``, a pub/sub channel (not a key): the grant and the release publish on it.

Waiting is by notification: a waiter subscribes to the name's channel (and has the subscription
confirmed) before it tries again, then sleeps until a release is published or the holder's
remaining lease (PTTL, which the failed grant returns) runs out, bounded by ``wait``: a holder that
died never publishes, its key just expires. **Waiting is not FIFO**: every waiter of a name wakes on
a release and the first grant script to run wins. A waiter holds one pub/sub connection while it
waits; cancelling it closes that connection (the subscription ends with it) and, as nothing was
written, leaves nothing behind.

redis-py is imported here only (``pip install meshkit[redis]``), by :func:`open_redis`.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator, Iterator
from importlib import resources
from typing import Any
from urllib.parse import unquote

from meshkit.coord.backend import Grant, Holder
from meshkit.errors import BadLockRequest, EngineUnavailable, LockTimeout, StatusCode
from meshkit.schemes import BackendURL

DEFAULT_PREFIX = "meshkit:coord:"
#: How long connecting may take (``?connect_timeout=``), and a command's answer (``?timeout=``).
CONNECT_TIMEOUT = 2.0
COMMAND_TIMEOUT = 5.0
HOW_TO_START = "start it with: bash scripts/engines.sh"
OPTIONS = ("prefix", "connect_timeout", "timeout")


def _lua(name: str) -> str:
    return resources.files("meshkit.coord").joinpath("lua", f"{name}.lua").read_text()


GRANT, RENEW, RELEASE = _lua("grant"), _lua("renew"), _lua("release")


def open_redis(url: BackendURL) -> RedisLocks:
    """The backend ``redis://host:port/db`` names (nothing connects until the first call)."""
    try:
        import redis.asyncio as aioredis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff
    except ImportError as exc:
        raise ImportError(f"redis:// locks need redis-py: pip install meshkit[redis] ({exc})") from exc
    unknown = sorted(set(url.query) - set(OPTIONS))
    if unknown:
        raise BadLockRequest(f"URL {url.url!r}: unknown option {', '.join(unknown)} (known: {', '.join(OPTIONS)})")
    parts = url.parts
    db = url.path.strip("/") or "0"
    try:
        port = parts.port or 6379
        connect_timeout = url.number("connect_timeout", CONNECT_TIMEOUT)
        timeout = url.number("timeout", COMMAND_TIMEOUT)
    except ValueError as exc:
        raise BadLockRequest(f"URL {url.url!r}: {exc}") from None
    if not db.isdigit():
        raise BadLockRequest(f"URL {url.url!r}: the path is a database number (redis://host:port/0), got {db!r}")
    host = parts.hostname or "127.0.0.1"
    client = aioredis.Redis(
        host=host,
        port=port,
        db=int(db),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        ssl=url.scheme == "rediss",
        socket_connect_timeout=connect_timeout,
        socket_timeout=timeout,
        # No retry inside the driver: the watchdog of meshkit.coord.Locks retries renewals itself,
        # and a release retried after its answer was lost would report False for a lock it gave back.
        retry=Retry(NoBackoff(), 0),
    )
    return RedisLocks(client, where=f"{host}:{port}", prefix=url.text("prefix", DEFAULT_PREFIX), timeout=timeout)


class RedisLocks:
    """Locks and elections (:class:`~meshkit.coord.backend.ElectionBackend`) on one Redis client."""

    def __init__(self, client: Any, *, where: str, prefix: str = DEFAULT_PREFIX, timeout: float = COMMAND_TIMEOUT):
        import redis.exceptions as rex

        self._redis = client
        self._rex = rex
        self.where = where
        self.prefix = prefix
        self._timeout = timeout
        self._grant = client.register_script(GRANT)
        self._renew = client.register_script(RENEW)
        self._release = client.register_script(RELEASE)
        self._cleanups: set[asyncio.Task[Any]] = set()

    def keys(self, name: str) -> tuple[str, str, str]:
        """The holder hash, the fence counter and the channel of ``name``."""
        return f"{self.prefix}lock:{name}", f"{self.prefix}fence:{name}", f"{self.prefix}chan:{name}"

    async def acquire(self, name: str, owner: str, ttl: float, wait: float | None, value: bytes = b"") -> Grant:
        lock, fence, channel = self.keys(name)
        args = (owner, _ms(ttl), value, channel)
        with self._translated():
            granted, n = await self._try(lock, fence, args)
            if not granted and wait != 0:
                granted, n = await self._wait(lock, fence, channel, args, wait)
        if not granted:
            raise LockTimeout(f"lock {name!r} was not granted within {wait:g}s (Redis at {self.where})")
        return Grant(name, owner, n, ttl, value, handle=(lock, channel))

    async def renew(self, grant: Grant) -> bool:
        lock, _ = grant.handle
        with self._translated():
            return bool(await self._renew(keys=[lock], args=[grant.owner, _ms(grant.ttl)]))

    async def release(self, grant: Grant) -> bool:
        lock, channel = grant.handle
        with self._translated():
            return bool(await self._release(keys=[lock], args=[grant.owner, channel]))

    async def holder(self, name: str) -> Holder | None:
        with self._translated():
            return (await self._read(self.keys(name)[0]))[0]

    async def watch(self, name: str) -> AsyncIterator[Holder | None]:
        """The holder now, then again after every grant and release (both publish) and whenever
        the holder's lease runs out (woken at its PTTL). Each wake-up reads the holder again, so
        changes closer together than a round trip may be seen as one, never out of order."""
        lock, _, channel = self.keys(name)
        last: Any = object()
        with self._translated():
            async with self._subscribed(channel) as pubsub:
                while True:
                    current, pttl = await self._read(lock)
                    if current != last:
                        last = current
                        yield current
                    expires = pttl / 1000 + 0.001 if current is not None and pttl >= 0 else None
                    await self._message(pubsub, expires, wanted=None)

    async def close(self) -> None:
        if self._cleanups:
            await asyncio.gather(*self._cleanups, return_exceptions=True)
        await self._redis.aclose()

    async def _try(self, lock: str, fence: str, args: tuple[Any, ...]) -> tuple[bool, int]:
        """One grant attempt: (True, token) or (False, the holder's PTTL in ms)."""
        try:
            granted, n = await self._grant(keys=[lock, fence], args=args)
        except asyncio.CancelledError:
            # The script may have run before the answer was lost: give back what may be ours (the
            # owner id is this attempt's alone, so this never touches anyone else's grant).
            cleanup = asyncio.ensure_future(self._release(keys=[lock], args=[args[0], args[3]]))
            self._cleanups.add(cleanup)
            cleanup.add_done_callback(self._cleanups.discard)
            with contextlib.suppress(Exception):
                await asyncio.shield(cleanup)
            raise
        return bool(granted), int(n)

    async def _wait(
        self, lock: str, fence: str, channel: str, args: tuple[Any, ...], wait: float | None
    ) -> tuple[bool, int]:
        loop = asyncio.get_running_loop()
        deadline = math.inf if wait is None else loop.time() + wait
        async with self._subscribed(channel) as pubsub:
            while True:
                granted, n = await self._try(lock, fence, args)  # subscribed first: no release is missed
                left = deadline - loop.time()
                if granted or left <= 0:
                    return granted, n
                expires = n / 1000 + 0.001 if n >= 0 else math.inf  # -1: a key without expiry
                await self._message(pubsub, min(left, expires), wanted=b"release")

    @contextlib.asynccontextmanager
    async def _subscribed(self, channel: str) -> AsyncIterator[Any]:
        """A pub/sub connection subscribed to ``channel``, the subscription confirmed by Redis."""
        pubsub = self._redis.pubsub()
        try:
            await pubsub.subscribe(channel)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self._timeout
            while True:
                left = deadline - loop.time()
                if left <= 0:
                    raise self._rex.TimeoutError(f"no confirmation of SUBSCRIBE {channel} within {self._timeout:g}s")
                message = await pubsub.get_message(timeout=left)
                if message is not None and message["type"] == "subscribe":
                    break
            yield pubsub
        finally:
            await pubsub.aclose()  # closes the connection: no subscription outlives the waiter

    @staticmethod
    async def _message(pubsub: Any, timeout: float | None, wanted: bytes | None) -> None:
        """Until a message (``wanted``, or any) arrives on ``pubsub`` or ``timeout`` s have passed."""
        loop = asyncio.get_running_loop()
        deadline = math.inf if timeout is None or math.isinf(timeout) else loop.time() + timeout
        while True:
            left = deadline - loop.time()
            if left <= 0:
                return
            message = await pubsub.get_message(timeout=None if math.isinf(left) else left)
            if message is not None and message["type"] == "message" and wanted in (None, message["data"]):
                return

    async def _read(self, lock: str) -> tuple[Holder | None, int]:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hmget(lock, "owner", "value", "token")
            pipe.pttl(lock)
            (owner, value, token), pttl = await pipe.execute()
        if owner is None:
            return None, -2
        return Holder(owner.decode(), value or b"", int(token)), int(pttl)

    @contextlib.contextmanager
    def _translated(self) -> Iterator[None]:
        """redis-py's exceptions as meshkit's, naming the server and how to start it."""
        rex = self._rex
        try:
            yield
        except rex.AuthenticationError as exc:
            raise EngineUnavailable(
                f"Redis at {self.where} refused our credentials: {exc}", code=StatusCode.UNAUTHENTICATED
            ) from exc
        except rex.NoPermissionError as exc:
            raise EngineUnavailable(
                f"Redis at {self.where} does not let this user run the lock scripts: {exc}",
                code=StatusCode.PERMISSION_DENIED,
            ) from exc
        except (rex.ConnectionError, rex.TimeoutError, OSError) as exc:
            raise EngineUnavailable(
                f"Redis at {self.where} cannot be reached ({exc or type(exc).__name__}); {HOW_TO_START}"
            ) from exc
        except rex.RedisError as exc:
            raise EngineUnavailable(f"Redis at {self.where} refused a lock command: {exc}") from exc


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))
