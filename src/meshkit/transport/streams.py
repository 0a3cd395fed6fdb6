"""The caller's buffer of one server stream, with credit-based flow control."""

from __future__ import annotations

import asyncio
import collections
from typing import TYPE_CHECKING

from meshkit.protocol.frames import Frame

if TYPE_CHECKING:
    from meshkit.transport.client import ClientConnection


#: How many stream messages the caller allows in flight before it must send CREDIT.
DEFAULT_STREAM_WINDOW = 64


class StreamReceiver:
    """Caller-side buffer of one server stream with credit-based flow control.

    The caller grants ``window`` messages up front and tops the grant up by CREDIT frames as it
    consumes them, so a fast producer can never fill a slow consumer's memory (the connection
    counts the credit and refuses a peer that sends past it).
    """

    __slots__ = ("_conn", "_consumed", "_done", "_error", "_items", "_waiter", "stream_id", "window")

    def __init__(self, conn: ClientConnection, window: int) -> None:
        self._conn = conn
        self.stream_id = 0
        self.window = window
        self._items: collections.deque[Frame] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self._done = False
        self._error: BaseException | None = None
        self._consumed = 0

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def feed(self, frame: Frame) -> None:
        self._items.append(frame)
        self._wake()

    def finish(self, error: BaseException | None = None) -> None:
        self._done = True
        self._error = error
        self._wake()

    async def next(self) -> Frame | None:
        """The next message, None at a clean end; raises the stream's error."""
        while not self._items:
            if self._done:
                if self._error is not None:
                    raise self._error
                return None
            self._waiter = self._conn._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        frame = self._items.popleft()
        self._consumed += 1
        if self._consumed * 2 >= self.window and not self._done:
            self._conn.send(self._conn.proto.send_credit(self.stream_id, self._consumed))
            self._consumed = 0
        return frame

    def cancel(self) -> None:
        if not self._done:
            self._done = True
            self._conn.cancel_stream(self.stream_id)
