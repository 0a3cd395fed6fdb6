"""The server's end of a connection, and the listener that owns them and drains them on stop.

The transport knows frames, streams and shutdown; what a REQUEST means is the dispatcher's business
(the RPC layer hands one in), so this layer never imports :mod:`meshkit.rpc`.
"""

from __future__ import annotations

import asyncio
import logging
import ssl as _ssl
from collections.abc import Callable
from typing import Any, Protocol

from meshkit.errors import StatusCode
from meshkit.protocol.connection import Cancelled, ConnectionBroken, CreditGranted, Role
from meshkit.protocol.frames import Frame
from meshkit.protocol.keepalive import KeepaliveConfig
from meshkit.protocol.limits import Limits
from meshkit.transport.base import FrameProtocol

log = logging.getLogger("meshkit.transport")

_Frame = Frame


class StreamHandle(Protocol):
    """What the server keeps per running call: something it can cancel, maybe wake for credit."""

    def cancel(self, msg: Any = None) -> Any: ...


class Dispatcher(Protocol):
    def __call__(self, conn: ServerConnection, frame: Frame) -> None: ...


class ServerConnection(FrameProtocol):
    """The server's end: REQUEST frames go to the dispatcher, everything else is the connection's."""

    role = Role.SERVER
    _holds_backlog = True
    _whole_frames_are_life = True
    __slots__ = ("_dispatch", "_on_close", "_on_open")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        limits: Limits,
        keepalive: KeepaliveConfig | None,
        dispatch: Dispatcher,
        on_open: Callable[[ServerConnection], None],
        on_close: Callable[[ServerConnection], None],
    ) -> None:
        super().__init__(loop, limits, keepalive)
        self._dispatch = dispatch
        self._on_open = on_open
        self._on_close = on_close

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._on_open(self)

    @property
    def active(self) -> dict[int, Any]:
        """Open calls by stream id -> their handle (None while a call runs its first step)."""
        return self.proto.streams

    def events_received(self, events: list[Any]) -> None:
        dispatch = self._dispatch
        handled = 0
        for event in events:
            handled += 1  # noqa: SIM113 - cheaper than enumerate on this path
            if event.__class__ is _Frame:
                dispatch(self, event)
            else:
                self._event(event)
            if self._paused or self._closing:
                if not self._closing:
                    # The peer is not reading our answers: keep the rest for resume_writing().
                    self._backlog.extend(events[handled:])
                return

    def _event(self, event: Any) -> None:
        kind = event.__class__
        if kind is Cancelled:
            if event.attachment is not None:
                event.attachment.cancel("cancelled by caller")
        elif kind is CreditGranted:
            if event.attachment is not None:
                event.attachment.add_credit()
        elif kind is ConnectionBroken:
            self.broken(event)
        # PongReceived, GoAwayReceived: nothing to do on this side

    def attach(self, stream_id: int, handle: StreamHandle) -> None:
        """``handle`` runs the call on ``stream_id``: a CANCEL, a stop or a loss reaches it. A
        stream already closed (its CANCEL came in the same read as its REQUEST) cancels it now."""
        if not self.proto.attach(stream_id, handle):
            handle.cancel("cancelled by caller")

    def send_error(
        self, stream_id: int, code: StatusCode, message: str, details: Any = None, *, not_processed: bool = False
    ) -> None:
        self.send(self.proto.send_error(stream_id, code, message, details, not_processed=not_processed))

    def pause_writing(self) -> None:
        # A peer that does not read must not make us buffer without bound: stop reading its
        # requests, and stop handling those already read (they wait in the backlog).
        super().pause_writing()
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        super().resume_writing()
        backlog = self._backlog
        while backlog and not self._paused and not self._closing:
            event = backlog.popleft()
            if event.__class__ is _Frame:
                self._dispatch(self, event)
            else:
                self._event(event)
        if self._pending:
            self._flush()
        if self._transport is not None and not self._closing and not self._paused:
            self._transport.resume_reading()

    def start_drain(self) -> None:
        """Refuse new calls from here on; tell the client which ones will still be answered."""
        if self.proto.draining or self._closing:
            return
        self.send(self.proto.send_goaway())
        self.usable = False
        # The client closes once its last answer arrives. Closing from this side while requests
        # may still be in the socket would make the kernel send RST and drop answers already
        # written, so the server closes only when the grace period runs out.

    def call_finished(self, stream_id: int) -> None:
        """A call's handler is done; forget its stream if no answer closed it (a cancelled call)."""
        self.proto.forget(stream_id)

    def lost(self, exc: Exception | None) -> None:
        for handle in self.proto.close():
            if handle is not None:
                handle.cancel("connection lost")
        self._on_close(self)


class Listener:
    """Accepts connections and tracks them so that a stop can drain them."""

    def __init__(
        self,
        dispatch: Dispatcher,
        *,
        limits: Limits | None = None,
        keepalive: KeepaliveConfig | None = None,
        ssl: _ssl.SSLContext | None = None,
    ) -> None:
        self._dispatch = dispatch
        self._limits = limits or Limits()
        self._keepalive = keepalive
        self._ssl = ssl
        self._server: asyncio.AbstractServer | None = None
        self.connections: set[ServerConnection] = set()
        self.host = ""
        self.port = 0

    def make_connection(self) -> ServerConnection:
        """A server connection for a transport that is about to be made (a socket accepted, or
        an in-memory pipe: :mod:`meshkit.testing.memory`); tracked from ``connection_made`` on,
        so a TLS handshake that fails never counts."""
        return ServerConnection(
            asyncio.get_running_loop(),
            self._limits,
            self._keepalive,
            self._dispatch,
            self.connections.add,
            self.connections.discard,
        )

    async def start(self, host: str, port: int, *, backlog: int = 1024) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self.make_connection, host, port, ssl=self._ssl, backlog=backlog, reuse_address=True
        )
        sockname = self._server.sockets[0].getsockname()
        self.host, self.port = sockname[0], sockname[1]

    async def stop(self, grace: float) -> int:
        """Stop accepting, GOAWAY every connection, let in-flight calls finish for up to ``grace``
        seconds, then cancel what is left. Returns how many calls had to be cancelled."""
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            conn.start_drain()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        # Clients close their side after their last answer; wait for that, up to the grace period.
        while self.connections and loop.time() < deadline:
            waiters = [c.closed for c in self.connections]
            await asyncio.wait(waiters, timeout=max(0.0, deadline - loop.time()), return_when=asyncio.FIRST_COMPLETED)
        cancelled = 0
        for conn in list(self.connections):
            running = [(sid, handle) for sid, handle in conn.active.items() if handle is not None]
            cancelled += len(running)
            for sid, handle in running:
                handle.cancel("server stopped")
                conn.send_error(sid, StatusCode.UNAVAILABLE, "server stopped before the call finished")
            conn.close()
        if self._server is not None:
            await self._server.wait_closed()
        waiters = [conn.closed for conn in self.connections if not conn.closed.done()]
        if waiters:
            await asyncio.wait(waiters, timeout=1.0)
        for conn in list(self.connections):
            # Still open: a client that does not read keeps our answers stuck in the buffer.
            conn.abort()
        return cancelled
