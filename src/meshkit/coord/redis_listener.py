"""One Redis pub/sub connection for every waiter and watcher of a backend.

A waiter must be subscribed to its name's channel *before* it tries the grant again, or a release
published between its failed try and its subscription would be missed and it would sleep until
the holder's PTTL. So :meth:`Listener.subscribe` returns only once Redis has confirmed the
SUBSCRIBE. Channels are shared and counted: the first subscriber of a channel sends SUBSCRIBE,
the last one to leave sends UNSUBSCRIBE, and 400 waiters cost one connection, not 400.

Confirmations are matched by count: Redis answers the SUBSCRIBEs of one connection in the order
they were sent, so the n-th ``subscribe`` message of a channel confirms its n-th SUBSCRIBE, even
when a channel was left and joined again before the first confirmation arrived.

When the connection fails, every subscriber is woken with the error (its ``acquire`` raises it,
translated) and the next subscription opens a new connection. It takes the caller's redis-py
client and imports nothing of redis-py itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator
from typing import Any


class ListenerClosed(Exception):
    """The backend was closed while this subscriber waited."""


class Subscription:
    """One subscriber of one channel: ``event`` is set by each message it wants (or an error),
    and ``message`` is the data of the last one."""

    __slots__ = ("channel", "error", "event", "message", "wanted")

    def __init__(self, channel: bytes, wanted: bytes | None) -> None:
        self.channel = channel
        #: How the data of a message that wakes this subscriber begins; None: any message.
        self.wanted = wanted
        self.event = asyncio.Event()
        self.message: bytes | None = None
        self.error: BaseException | None = None

    async def wait(self, timeout: float) -> None:
        """Until a wanted message arrives (since ``event`` was last cleared) or ``timeout`` s pass."""
        if math.isinf(timeout):
            await self.event.wait()
        else:
            try:
                async with asyncio.timeout(max(timeout, 0.0)):
                    await self.event.wait()
            except TimeoutError:
                pass
        if self.error is not None:
            raise self.error


class Listener:
    def __init__(self, client: Any, timeout: float) -> None:
        self._client = client
        self._timeout = timeout
        self._pubsub: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._subscribers: dict[bytes, set[Subscription]] = {}
        self._sent: dict[bytes, int] = {}  # SUBSCRIBEs sent per channel on this connection
        self._confirmed: dict[bytes, int] = {}  # and confirmed
        self._changed = asyncio.Condition()
        self._write = asyncio.Lock()
        self._leaving: set[asyncio.Task[None]] = set()

    @contextlib.asynccontextmanager
    async def subscribed(self, channel: str, wanted: bytes | None = None) -> AsyncIterator[Subscription]:
        subscription = await self.subscribe(channel.encode(), wanted)
        try:
            yield subscription
        finally:
            await self.unsubscribe(subscription)

    async def subscribe(self, channel: bytes, wanted: bytes | None) -> Subscription:
        """A subscription of ``channel`` that Redis has confirmed."""
        subscription = Subscription(channel, wanted)
        subscribers = self._subscribers.setdefault(channel, set())
        first = not subscribers
        subscribers.add(subscription)
        try:
            if first:
                self._sent[channel] = target = self._sent.get(channel, 0) + 1
                async with self._write:  # FIFO: SUBSCRIBEs go out in the order they were counted
                    try:
                        pubsub = await self._open()
                        await pubsub.subscribe(channel)
                    except Exception as exc:
                        await self._reset(exc)  # counted but maybe not sent: start again from zero
                        raise
            else:
                target = self._sent[channel]
            async with self._changed:
                try:
                    async with asyncio.timeout(self._timeout):
                        await self._changed.wait_for(
                            lambda: self._confirmed.get(channel, 0) >= target or subscription.error is not None
                        )
                except TimeoutError:
                    raise TimeoutError(f"Redis did not confirm SUBSCRIBE {channel.decode()} within {self._timeout:g}s")
            if subscription.error is not None:
                raise subscription.error
        except BaseException:
            await self.unsubscribe(subscription)
            raise
        return subscription

    def subscribers(self, channel: str) -> int:
        """How many subscribers ``channel`` has here (Redis counts this connection once)."""
        return len(self._subscribers.get(channel.encode(), ()))

    async def unsubscribe(self, subscription: Subscription) -> None:
        """Leave; the last subscriber of a channel unsubscribes it on Redis, in a task of its own
        that the leaver does not wait for: a waiter handed the lock returns at once, and no
        cancellation of the leaver can leave the channel subscribed (``close`` waits for them)."""
        channel = subscription.channel
        subscribers = self._subscribers.get(channel)
        if subscribers is None or subscription not in subscribers:
            return
        subscribers.discard(subscription)
        if subscribers:
            return
        del self._subscribers[channel]
        leave = asyncio.ensure_future(self._leave(channel))
        self._leaving.add(leave)
        leave.add_done_callback(self._leaving.discard)

    async def _leave(self, channel: bytes) -> None:
        async with self._write:
            if self._pubsub is not None and channel not in self._subscribers:
                with contextlib.suppress(Exception):  # a broken connection has dropped it anyway
                    await self._pubsub.unsubscribe(channel)

    async def close(self) -> None:
        if self._leaving:
            await asyncio.gather(*self._leaving, return_exceptions=True)
        await self._reset(None)

    async def _open(self) -> Any:
        if self._pubsub is None:
            pubsub = self._client.pubsub()
            await pubsub.connect()
            self._pubsub = pubsub
            self._reader = asyncio.ensure_future(self._read(pubsub))
        return self._pubsub

    async def _read(self, pubsub: Any) -> None:
        try:
            while True:
                message = await pubsub.get_message(timeout=None)
                if message is None:
                    continue
                kind, channel = message["type"], message["channel"]
                if kind == "message":
                    data = message["data"]
                    for subscription in self._subscribers.get(channel, ()):
                        if subscription.wanted is None or data.startswith(subscription.wanted):
                            subscription.message = data
                            subscription.event.set()
                elif kind == "subscribe":
                    self._confirmed[channel] = self._confirmed.get(channel, 0) + 1
                    async with self._changed:
                        self._changed.notify_all()
        except Exception as exc:  # noqa: BLE001 - every subscriber gets it, translated by its caller
            if self._pubsub is pubsub:
                self._reader = None  # this task is ending: _reset must not wait for it
                await self._reset(exc)

    async def _reset(self, error: BaseException | None) -> None:
        """Drop the connection; wake every subscriber with ``error`` (None: closing)."""
        pubsub, reader = self._pubsub, self._reader
        self._pubsub = self._reader = None
        self._sent.clear()
        self._confirmed.clear()
        for subscribers in self._subscribers.values():
            for subscription in subscribers:
                subscription.error = error or ListenerClosed("the Redis lock backend was closed")
                subscription.event.set()
        self._subscribers.clear()
        async with self._changed:
            self._changed.notify_all()
        if reader is not None:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
        if pubsub is not None:
            with contextlib.suppress(Exception):
                await pubsub.aclose()
