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

from meshkit.errors import MalformedFrame, ProtocolError, StatusCode
from meshkit.protocol.decoder import Rejected
from meshkit.protocol.frames import Flags, Frame, FrameType, encode_frame
from meshkit.protocol.keepalive import KeepaliveConfig
from meshkit.protocol.limits import Limits
from meshkit.protocol.messages import decode_credit, encode_error, encode_goaway
from meshkit.transport.base import FrameProtocol

log = logging.getLogger("meshkit.transport")

_REQUEST = int(FrameType.REQUEST)
_ERROR = int(FrameType.ERROR)
_NOT_PROCESSED = int(Flags.NOT_PROCESSED)


class StreamHandle(Protocol):
    """What the server keeps per running call: something it can cancel, maybe grant credit to."""

    def cancel(self, msg: Any = None) -> Any: ...


class Dispatcher(Protocol):
    def __call__(self, conn: ServerConnection, frame: Frame) -> None: ...


class ServerConnection(FrameProtocol):
    _holds_backlog = True
    _whole_frames_are_life = True
    __slots__ = ("_dispatch", "_on_close", "_on_open", "active", "draining", "last_stream_id")

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
        #: Calls whose handler is still running (suspended at least once), by stream id.
        self.active: dict[int, StreamHandle] = {}
        self.draining = False
        self.last_stream_id = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._on_open(self)

    def frame_received(self, frame: Frame) -> None:
        ftype = frame.type
        if ftype == _REQUEST:
            sid = frame.stream_id
            if sid == 0:
                self.protocol_error(MalformedFrame("REQUEST on stream 0"))
                return
            if sid in self.active:
                self.protocol_error(MalformedFrame(f"REQUEST reuses stream {sid}, which is still open"))
                return
            if self.draining:
                self.send_error(sid, StatusCode.UNAVAILABLE, "server is shutting down", not_processed=True)
                return
            if len(self.active) >= self.limits.max_concurrent_streams:
                self.send_error(
                    sid,
                    StatusCode.RESOURCE_EXHAUSTED,
                    f"too many concurrent calls on this connection (limit {self.limits.max_concurrent_streams})",
                    not_processed=True,
                )
                return
            if sid > self.last_stream_id:
                self.last_stream_id = sid
            self._dispatch(self, frame)
        elif ftype == FrameType.CANCEL:
            handle = self.active.pop(frame.stream_id, None)
            if handle is not None:
                handle.cancel("cancelled by caller")
        elif ftype == FrameType.CREDIT:
            handle = self.active.get(frame.stream_id)
            if handle is not None and hasattr(handle, "add_credit"):
                try:
                    handle.add_credit(decode_credit(frame.body))
                except ProtocolError as exc:
                    self.protocol_error(exc)
        elif ftype == FrameType.PING:
            self.answer_ping(frame)
        elif ftype == FrameType.PONG or ftype == FrameType.GOAWAY:
            pass
        else:
            self.protocol_error(MalformedFrame(f"a client does not send {FrameType(ftype).name} frames"))

    def frame_rejected(self, rejected: Rejected) -> None:
        """A call whose metadata is over the limit: refuse that call, keep the connection (other
        callers' calls share it; the frame's framing was intact, so nothing is lost)."""
        sid = rejected.stream_id
        if rejected.type != _REQUEST or sid == 0 or sid in self.active:
            super().frame_rejected(rejected)
            return
        if self.draining:
            self.send_error(sid, StatusCode.UNAVAILABLE, "server is shutting down", not_processed=True)
            return
        # INVALID_ARGUMENT, not RESOURCE_EXHAUSTED: sending it again (another instance, a retry
        # policy) would be refused the same way; the caller must send less.
        self.send_error(
            sid,
            StatusCode.INVALID_ARGUMENT,
            f"call metadata of {rejected.metadata_length} bytes is over this server's limit of "
            f"{self.limits.max_metadata_size} bytes",
            not_processed=True,
        )

    def send_error(
        self, stream_id: int, code: StatusCode, message: str, details: Any = None, *, not_processed: bool = False
    ) -> None:
        self.send(
            encode_frame(
                _ERROR, stream_id, encode_error(code, message, details), b"", _NOT_PROCESSED if not_processed else 0
            )
        )

    def goaway_last_stream_id(self) -> int:
        # Everything up to the highest stream seen may have run: only later ones are safe to retry.
        return self.last_stream_id

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
            self.handle_item(backlog.popleft())
        if self._transport is not None and not self._closing and not self._paused:
            self._transport.resume_reading()

    def start_drain(self) -> None:
        """Refuse new calls from here on; tell the client which ones will still be answered."""
        if self.draining or self._closing:
            return
        self.draining = True
        self.send(encode_frame(FrameType.GOAWAY, 0, encode_goaway(self.last_stream_id)))
        # The client closes once its last answer arrives. Closing from this side while requests
        # may still be in the socket would make the kernel send RST and drop answers already
        # written, so the server closes only when the grace period runs out.

    def call_finished(self, stream_id: int) -> None:
        self.active.pop(stream_id, None)

    def lost(self, exc: Exception | None) -> None:
        active, self.active = self.active, {}
        for handle in active.values():
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

    async def start(self, host: str, port: int, *, backlog: int = 1024) -> None:
        loop = asyncio.get_running_loop()

        def factory() -> ServerConnection:
            # Tracked from connection_made on: a TLS handshake that fails never gets there.
            return ServerConnection(
                loop, self._limits, self._keepalive, self._dispatch, self.connections.add, self.connections.discard
            )

        self._server = await loop.create_server(factory, host, port, ssl=self._ssl, backlog=backlog, reuse_address=True)
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
            cancelled += len(conn.active)
            for sid, handle in list(conn.active.items()):
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
