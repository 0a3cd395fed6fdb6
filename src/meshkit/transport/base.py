"""The thin asyncio shell around the sans-IO :class:`~meshkit.protocol.connection.Connection`,
shared by both ends of a connection.

It does three things: hands received bytes to the connection and its events to a subclass,
writes bytes with *hybrid coalescing*, and runs the keepalive timer. Hybrid writes: the first frame
of a burst (a read, or an event-loop iteration) goes to the socket at once, so a lone call pays no
extra latency and no extra loop iteration; later frames of the burst are joined and written in one
syscall when the read has been handled, at the end of the iteration, or as soon as 16 of them
wait. Joining whole bursts was measured to put client and server into lock-step; writing early and
in small batches keeps both sides busy.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from typing import Any

from meshkit.errors import InternalError, ProtocolError
from meshkit.protocol.connection import Connection, ConnectionBroken, Role
from meshkit.protocol.keepalive import KeepaliveAction, KeepaliveConfig
from meshkit.protocol.limits import Limits

log = logging.getLogger("meshkit.transport")

#: Coalesced writes are handed to the transport early once they pass this many bytes.
FLUSH_THRESHOLD = 64 * 1024
#: ... and once this many frames wait. Measured on loopback at 64 calls in flight (bench/rpc.py):
#: joining a whole burst made the peers work in lock-step (x1.03 of the raw echo), batches of 4,
#: 8, 16 and 32 frames gave x1.28, x1.37, x1.45 and x1.30: small batches keep both sides busy.
MAX_BATCH_FRAMES = 16


class FrameProtocol(asyncio.Protocol):
    """An ``asyncio.Protocol`` over one :class:`Connection` (``self.proto``)."""

    #: Which side of the protocol this end speaks.
    role = Role.CLIENT
    #: Whether events read while writing is paused wait in a backlog (the server's side does).
    _holds_backlog = False
    #: Whether only whole frames count as a sign of life for keepalive (the server's side does:
    #: a peer trickling the bytes of a frame it never finishes, slowloris, is then closed after
    #: keepalive's interval + timeout). Otherwise any bytes do (a client reading a large answer
    #: over a slow link is not declared dead mid-frame).
    _whole_frames_are_life = False

    __slots__ = (
        "_backlog",
        "_closing",
        "_drain_waiters",
        "_flush_scheduled",
        "_keepalive_timer",
        "_loop",
        "_paused",
        "_pending",
        "_pending_size",
        "_transport",
        "_wrote_this_tick",
        "closed",
        "heard_any",
        "limits",
        "opened_at",
        "peer",
        "proto",
        "usable",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop, limits: Limits, keepalive: KeepaliveConfig | None) -> None:
        self._loop = loop
        self.limits = limits
        self.proto = Connection(self.role, limits, keepalive, loop.time())
        self._transport: asyncio.Transport | None = None
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._wrote_this_tick = False
        self._flush_scheduled = False
        self._paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._closing = True  # until connection_made: nothing to write to yet
        #: Open and taking new calls (kept as a plain attribute: the client reads it per call).
        self.usable = False
        self._keepalive_timer: asyncio.TimerHandle | None = None
        self.closed: asyncio.Future[None] = loop.create_future()
        self.peer = "?"
        self.opened_at = 0.0
        self.heard_any = False  # the peer has sent at least one byte: it speaks to us
        self._backlog: collections.deque[Any] = collections.deque()

    # -- asyncio.Protocol ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, so no isinstance check here.
        self._transport = transport  # type: ignore[assignment]
        self._closing = False
        self.usable = not self.proto.draining
        self.opened_at = self._loop.time()
        peername = transport.get_extra_info("peername")
        if isinstance(peername, tuple) and len(peername) >= 2:
            self.peer = f"{peername[0]}:{peername[1]}"
        keepalive = self.proto.keepalive
        if keepalive is not None:
            keepalive.heard(self._loop.time())
            self._arm_keepalive()

    def data_received(self, data: bytes) -> None:
        proto = self.proto
        if not self._whole_frames_are_life:
            proto.heard = True
        self.heard_any = True
        # A read starts a new burst: the first frame written in answer goes out at once, the rest
        # are joined and written when this read is handled (or at the end of the loop iteration).
        self._wrote_this_tick = False
        events = proto.receive(data)
        try:
            self.events_received(events)
        except ProtocolError as exc:
            self.protocol_error(exc)
        except Exception as exc:
            # A bug must not leave a half-handled connection behind: log it, close this one only.
            log.exception("error handling a frame from %s; closing the connection", self.peer)
            self.protocol_error(InternalError(f"{type(exc).__name__}: {exc}"))
        if proto.outgoing and not self._closing:
            self.send(proto.take_outgoing())
        if self._pending:
            self._flush()

    def events_received(self, events: list[Any]) -> None:
        """Handle what the connection made of a read (the subclass's business)."""
        raise NotImplementedError

    def eof_received(self) -> bool | None:
        return None  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self.usable = False
        if self._keepalive_timer is not None:
            self._keepalive_timer.cancel()
            self._keepalive_timer = None
        self._pending.clear()
        self._pending_size = 0
        for waiter in self._drain_waiters:
            if not waiter.done():
                waiter.set_exception(ConnectionResetError("connection lost"))
        self._drain_waiters.clear()
        self.lost(exc)
        if not self.closed.done():
            self.closed.set_result(None)

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        for waiter in self._drain_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._drain_waiters.clear()

    # -- for subclasses --------------------------------------------------------------------
    def lost(self, exc: Exception | None) -> None:
        """The connection is gone; fail or finish whatever depends on it."""

    # -- writing ---------------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        if self._closing:
            return
        if not self._wrote_this_tick:
            # First frame of a burst: to the socket at once, so a lone call waits for nothing.
            self._wrote_this_tick = True
            self._transport.write(data)  # type: ignore[union-attr]
            return
        self._pending.append(data)
        self._pending_size += len(data)
        if self._pending_size > FLUSH_THRESHOLD or len(self._pending) >= MAX_BATCH_FRAMES:
            # Big answers go to the transport now, so its flow control (pause_writing) sees them;
            # a full batch goes now, so the peer starts on it while we produce the next one.
            self._flush()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._end_tick)

    def _flush(self) -> None:
        pending = self._pending
        if pending and not self._closing:
            data = b"".join(pending) if len(pending) > 1 else pending[0]
            pending.clear()
            self._pending_size = 0
            self._transport.write(data)  # type: ignore[union-attr]

    def _end_tick(self) -> None:
        self._flush_scheduled = False
        self._wrote_this_tick = False
        self._flush()

    async def drain(self) -> None:
        """Wait until the socket's write buffer is below its high-water mark."""
        if self._closing:
            raise ConnectionResetError("connection closed")
        if not self._paused:
            return
        waiter: asyncio.Future[None] = self._loop.create_future()
        self._drain_waiters.append(waiter)
        await waiter

    @property
    def draining(self) -> bool:
        """Server: it sent GOAWAY. Client: it received one. Either way: no new calls here."""
        return self.proto.draining

    @property
    def last_stream_id(self) -> int:
        return self.proto.last_stream_id

    @property
    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        """Flush what is queued and close."""
        if self._closing or self._transport is None:
            self._closing = True
            self.usable = False
            return
        self._end_tick()
        self._closing = True
        self.usable = False
        self._transport.close()

    def abort(self) -> None:
        self._closing = True
        self.usable = False
        if self._transport is not None:
            self._transport.abort()

    def protocol_error(self, exc: ProtocolError) -> None:
        """The peer broke the protocol: tell it why in a GOAWAY, then close this connection only."""
        log.warning("protocol error from %s: %s; closing the connection", self.peer, exc)
        proto = self.proto
        if not proto.closed:
            proto.protocol_error(exc)
        if not self._closing and self._transport is not None:
            self._end_tick()
            self._transport.write(proto.take_outgoing())
        self.close()

    def broken(self, event: ConnectionBroken) -> None:
        """The connection found the peer breaking the protocol (its GOAWAY is queued)."""
        self.protocol_error(event.error)

    # -- keepalive -------------------------------------------------------------------------
    def _arm_keepalive(self) -> None:
        keepalive = self.proto.keepalive
        assert keepalive is not None
        when = keepalive.next_check(self._loop.time())
        self._keepalive_timer = self._loop.call_at(when, self._keepalive_tick)

    def _keepalive_tick(self) -> None:
        self._keepalive_timer = None
        proto = self.proto
        if self._closing or proto.keepalive is None:
            return
        action = proto.tick(self._loop.time())
        if action is KeepaliveAction.SEND_PING:
            self.send(proto.take_outgoing())
        elif action is KeepaliveAction.PEER_DEAD:
            self.peer_dead()
            return
        self._arm_keepalive()

    def peer_dead(self) -> None:
        """Keepalive found the peer silent past its timeout."""
        log.warning("peer %s sent nothing within the keepalive timeout; closing", self.peer)
        self.abort()

    def extra(self, name: str) -> Any:
        return self._transport.get_extra_info(name) if self._transport is not None else None
