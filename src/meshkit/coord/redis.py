"""Locks and elections on Redis: one hash per held name, granted, renewed and released by Lua.

``redis://[user:password@]host:port/db`` (``rediss://`` for TLS), with the query options
``prefix`` (``meshkit:coord:``), ``connect_timeout`` (2 s), ``timeout`` (5 s: a command's answer,
and a free connection when all ``max_connections``, 32, are busy). Per name, under the prefix
(``lock:``, ``fence:``, ``queue:``, ``waiter:``, ``chan:`` keep them apart whatever the name holds):

- ``{prefix}lock:{name}``, a hash (owner, value, token) that expires with the lease (PEXPIRE). It
  exists only while someone holds the name.
- ``{prefix}fence:{name}``, the fence counter, which never expires: the grant takes the token from
  it in the same atomic step, ``max(last + 1, server clock in µs)``, so tokens keep growing across
  a restart that lost the counter (see ``lua/queue.lua``).
- ``{prefix}queue:{name}``, the FIFO list of waiting owners, and per waiter its ticket
  ``{prefix}waiter:{name}:{owner}``, a hash (ttl, value) that expires ``TICKET`` (2 s) after the
  waiter last refreshed it. They exist only while someone waits.
- ``{prefix}chan:{name}``, a pub/sub channel (not a key): grants, hand-offs and releases publish.

**Waiting is FIFO, with direct hand-off** (as Redisson's fair lock). A waiter subscribes to the
name's channel (confirmed) and then runs the grant script with "enqueue": it is granted if the
name is free and no live waiter is ahead of it, else it is appended to the queue (RPUSH) with its
ticket. A release (``lua/release.lua``) does not free the name when someone waits: in the same
atomic step it pops the queue until an entry whose ticket still exists (dropping the dead ones),
grants the name to that owner (its value and ttl, a new token) and publishes ``granted:<owner>:<token>``.
The waiter takes the grant from that message (no round trip of its own) when it can prove the
message is current: the token is above the last one its latest refused attempt saw, so the
hand-off ran after that attempt, whose send time is then the grant's ``sent_at``; else (a message
delayed past a lease that lapsed since, or too little of the lease provably left) it runs the
grant script again, which finds it the holder and extends the lease to ttl from then. A
waiter also runs it every ``TICKET/3`` (refreshing its ticket; a waiter whose ticket lapsed goes
back to the end of the queue) and when the holder's lease (PTTL) runs out: a holder that died
never releases, and the grant script, finding the name free, hands it to the head of the queue
(not necessarily the waiter that ran it). ``wait=0`` never jumps the queue; a free name with
nobody queued is granted in one round trip, as before. A releaser that asks again at once queues
behind the others. A cancelled or timed-out waiter leaves in one script (LREM, DEL its ticket,
and gives back a grant handed to it meanwhile, which hands it on), so nothing stays behind; a
waiter that died without leaving can still be handed the name during the ``TICKET`` after its
last refresh (the name then stays idle until that grant's ttl runs out), after that it is
skipped, and the queue itself expires a ``TICKET`` after the last refresh of any waiter. The
waiters and watchers of a backend share one pub/sub connection (``redis_listener.py``).

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
from meshkit.coord.lease import RENEW_FRACTION
from meshkit.coord.redis_listener import Listener, ListenerClosed
from meshkit.errors import BadLockRequest, EngineUnavailable, LockTimeout, StatusCode
from meshkit.schemes import BackendURL

DEFAULT_PREFIX = "meshkit:coord:"
#: How long connecting may take (``?connect_timeout=``), and a command's answer (``?timeout=``).
CONNECT_TIMEOUT = 2.0
COMMAND_TIMEOUT = 5.0
HOW_TO_START = "start it with: bash scripts/engines.sh"
#: Connections one backend opens at most (``?max_connections=``); its waiters and watchers share one.
MAX_CONNECTIONS = 32
OPTIONS = ("prefix", "connect_timeout", "timeout", "max_connections")


def _lua(name: str) -> str:
    return resources.files("meshkit.coord").joinpath("lua", f"{name}.lua").read_text()


GRANT, RENEW, RELEASE = _lua("queue") + _lua("grant"), _lua("renew"), _lua("queue") + _lua("release")
#: How long a waiter's ticket lives unless refreshed (it is, every third of it, while it waits):
#: a waiter that died without leaving is skipped by the hand-offs after this.
TICKET = 2.0


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
        max_connections = int(url.number("max_connections", MAX_CONNECTIONS))
    except ValueError as exc:
        raise BadLockRequest(f"URL {url.url!r}: {exc}") from None
    if not (connect_timeout > 0 and timeout > 0):
        raise BadLockRequest(f"URL {url.url!r}: connect_timeout and timeout are seconds above 0")
    if max_connections < 2:  # the waiters' pub/sub connection is one of them
        raise BadLockRequest(f"URL {url.url!r}: max_connections must be at least 2, got {max_connections}")
    if not db.isdigit():
        raise BadLockRequest(f"URL {url.url!r}: the path is a database number (redis://host:port/0), got {db!r}")
    host = parts.hostname or "127.0.0.1"
    # A blocking pool: past ``max_connections`` a call waits (up to ``timeout``) for a connection
    # to come back instead of failing, so a burst of acquires is bounded on the engine.
    pool = aioredis.BlockingConnectionPool(
        connection_class=aioredis.SSLConnection if url.scheme == "rediss" else aioredis.Connection,
        max_connections=max_connections,
        timeout=timeout,
        host=host,
        port=port,
        db=int(db),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        socket_connect_timeout=connect_timeout,
        socket_timeout=timeout,
        # No retry inside the driver: the watchdog of meshkit.coord.Locks retries renewals itself,
        # and a release retried after its answer was lost would report False for a lock it gave back.
        retry=Retry(NoBackoff(), 0),
    )
    client = aioredis.Redis.from_pool(pool)
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
        self.listener = Listener(client, timeout)

    def keys(self, name: str) -> tuple[str, str, str]:
        """The holder hash, the fence counter and the channel of ``name``."""
        return f"{self.prefix}lock:{name}", f"{self.prefix}fence:{name}", f"{self.prefix}chan:{name}"

    def queue_keys(self, name: str) -> tuple[str, str]:
        """The waiters' queue of ``name`` and the prefix of its waiters' tickets (+ owner)."""
        return f"{self.prefix}queue:{name}", f"{self.prefix}waiter:{name}:"

    async def acquire(self, name: str, owner: str, ttl: float, wait: float | None, value: bytes = b"") -> Grant:
        lock, fence, channel = self.keys(name)
        queue, waiters = self.queue_keys(name)
        keys = [lock, fence, queue, waiters + owner]
        args = [owner, _ms(ttl), value, channel, 0, waiters, _ms(TICKET)]
        with self._translated() as cancels:
            granted, n, sent = await self._try(keys, args, cancels)
            if not granted and wait != 0:
                granted, n, sent = await self._wait(keys, args, wait, cancels)
        if not granted:
            raise LockTimeout(f"lock {name!r} was not granted within {wait:g}s (Redis at {self.where})")
        return Grant(name, owner, n, ttl, sent_at=sent, value=value, handle=(keys[:3], [owner, channel, waiters]))

    async def renew(self, grant: Grant) -> bool:
        keys, _ = grant.handle
        with self._translated():
            return bool(await self._renew(keys=keys[:1], args=[grant.owner, _ms(grant.ttl)]))

    async def release(self, grant: Grant) -> bool:
        """Give it back, handing it straight to the first live waiter (see ``lua/release.lua``)."""
        keys, args = grant.handle
        with self._translated():
            return bool(await self._release(keys=keys, args=args))

    async def holder(self, name: str) -> Holder | None:
        with self._translated():
            return (await self._read(self.keys(name)[0]))[0]

    async def watch(self, name: str) -> AsyncIterator[Holder | None]:
        """The holder now, then again after every grant, hand-off and release (each publishes) and whenever
        the holder's lease runs out (woken at its PTTL). Each wake-up reads the holder again, so
        changes closer together than a round trip may be seen as one, never out of order."""
        lock, _, channel = self.keys(name)
        last: Any = object()
        with self._translated():
            async with self.listener.subscribed(channel) as changes:
                while True:
                    changes.event.clear()
                    current, pttl = await self._read(lock)
                    if current != last:
                        last = current
                        yield current
                    await changes.wait(pttl / 1000 + 0.001 if current is not None and pttl >= 0 else math.inf)

    async def close(self) -> None:
        if self._cleanups:
            await asyncio.gather(*self._cleanups, return_exceptions=True)
        await self.listener.close()
        await self._redis.aclose()

    async def _try(self, keys: list[str], args: list[Any], cancels: int) -> tuple[bool, int, float]:
        """One grant attempt: (True, token, when it was sent) or (False, the holder's PTTL in ms, …)."""
        sent = asyncio.get_running_loop().time()
        try:
            granted, n = (await self._grant(keys=keys, args=args))[:2]
        except asyncio.CancelledError:
            # The script may have run before the answer was lost: give back what may be ours (the
            # owner id is this attempt's alone, so this never touches anyone else's grant).
            await self._give_back(keys, args)
            raise
        if _cancel_lost(cancels):
            if granted:
                await self._give_back(keys, args)
            raise asyncio.CancelledError
        return bool(granted), int(n), sent

    async def _give_back(self, keys: list[str], args: list[Any], *, leave: bool = False) -> None:
        """Release what may be ours (and, ``leave``, take us out of the queue), whatever happens
        to the caller meanwhile; an engine that cannot be reached is not reported here."""
        cleanup = asyncio.ensure_future(
            self._release(keys=keys if leave else keys[:3], args=[args[0], args[3], args[5]])
        )
        self._cleanups.add(cleanup)
        cleanup.add_done_callback(self._cleanups.discard)
        with contextlib.suppress(Exception):
            await asyncio.shield(cleanup)

    async def _wait(
        self, keys: list[str], args: list[Any], wait: float | None, cancels: int
    ) -> tuple[bool, int, float]:
        """Wait in the name's queue until a release (or a grant that found the lease run out) hands
        it to us. Each grant script run refreshes our ticket, so it runs at least every TICKET/3;
        and whenever the holder's lease may have run out.

        A hand-off tells us ``granted:<owner>:<token>``, and we take the grant from that message
        with no round trip of our own, if it is provably the current one: its token is above the
        last token our latest refused attempt saw (so it was granted after that attempt ran, and
        the attempt's send time is a safe start of the lease), and a third of the lease is left
        by that reckoning. Any other message (a stale one, delayed past a lease that has run out
        since) only wakes us to run the grant script again."""
        loop = asyncio.get_running_loop()
        deadline = math.inf if wait is None else loop.time() + wait
        args = [*args[:4], 1, *args[5:]]
        handed_off = b"granted:" + args[0].encode() + b":"
        fresh = float(args[1]) / 1000 * RENEW_FRACTION  # the lease that must be left to take it as is
        try:
            # Subscribed before enqueued: the hand-off to us that a release publishes is not missed.
            async with self.listener.subscribed(args[3], handed_off) as handed:
                while True:
                    handed.event.clear()
                    handed.message = None
                    sent = loop.time()
                    # Granted to us (handed over, or free and we are first): the script extends the
                    # lease to ttl from its run, so ``sent`` is a safe start of it.
                    answer = await self._grant(keys=keys, args=args)
                    if _cancel_lost(cancels):
                        raise asyncio.CancelledError
                    if answer[0]:
                        return True, int(answer[1]), sent
                    now = loop.time()
                    if now >= deadline:
                        break
                    pttl, last = int(answer[1]), int(answer[2])
                    # Look again at the latest when our ticket needs its refresh or the holder's
                    # lease runs out (-1: it has no expiry); sooner if a hand-off message comes.
                    look_again = min(deadline, now + TICKET / 3, now + pttl / 1000 + 0.001 if pttl >= 0 else math.inf)
                    while (left := look_again - loop.time()) > 0:
                        await handed.wait(left)
                        message, handed.message = handed.message, None
                        handed.event.clear()
                        if message is None:
                            continue  # woken without a message: wait out the time left
                        try:
                            token = int(message[len(handed_off) :])
                        except ValueError:
                            continue  # not one of ours (only a stranger on our channel sends that)
                        if token <= last:
                            continue  # stale: a grant of ours from before that lapsed since
                        if loop.time() - sent < fresh:
                            return True, token, sent
                        break  # ours, but too little of the lease is provably left: ask the engine
        except BaseException:
            await self._give_back(keys, args, leave=True)  # out of the queue; a grant got is handed on
            raise
        await self._give_back(keys, args, leave=True)
        return False, 0, 0.0

    async def _read(self, lock: str) -> tuple[Holder | None, int]:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hmget(lock, "owner", "value", "token")
            pipe.pttl(lock)
            (owner, value, token), pttl = await pipe.execute()
        if owner is None:
            return None, -2
        return Holder(owner.decode(), value or b"", int(token)), int(pttl)

    @contextlib.contextmanager
    def _translated(self) -> Iterator[int]:
        """redis-py's exceptions as meshkit's, naming the server and how to start it. Gives the
        task's count of cancellation requests (see :func:`_cancel_lost`)."""
        rex = self._rex
        task = asyncio.current_task()
        cancels = task.cancelling() if task is not None else 0
        try:
            yield cancels
            if _cancel_lost(cancels):
                raise asyncio.CancelledError
        except ListenerClosed as exc:
            raise EngineUnavailable(f"the lock backend of Redis at {self.where} was closed while waiting") from exc
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


def _cancel_lost(cancels: int) -> bool:
    """Whether this task was cancelled since it had ``cancels`` requests, yet no CancelledError came:
    Python 3.11's ``asyncio.wait_for`` (inside redis-py) returns the result of a command that
    completed as the cancellation arrived and drops the cancellation. The command's answer is
    sound, but the caller asked to stop: raise CancelledError as it expects (after giving back a
    grant that answer made)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > cancels


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))
