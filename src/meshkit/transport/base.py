"""The thin asyncio shell around the sans-IO decoder, shared by both ends of a connection.

It does three things: feeds received bytes to the decoder, writes frames with *hybrid coalescing*,
and runs keepalive. Hybrid writes: the first frame of a burst (a read, or an event-loop iteration)
goes to the socket at once, so a lone call pays no extra latency and no extra loop iteration; later
frames of the burst are joined and written in one syscall when the read has been handled, at the
end of the iteration, or as soon as 16 of them wait. Joining whole bursts was measured to put
client and server into lock-step; writing early and in small batches keeps both sides busy.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from typing import Any

from meshkit.errors import InternalError, MetadataTooLarge, ProtocolError
from meshkit.protocol.decoder import FrameDecoder, Rejected
from meshkit.protocol.frames import Frame, FrameType, encode_frame
from meshkit.protocol.keepalive import Keepalive, KeepaliveAction, KeepaliveConfig
from meshkit.protocol.limits import Limits
from meshkit.protocol.messages import encode_goaway

log = logging.getLogger("meshkit.transport")

#: Coalesced writes are handed to the transport early once they pass this many bytes.
FLUSH_THRESHOLD = 64 * 1024
#: ... and once this many frames wait. Measured on loopback at 64 calls in flight (bench/rpc.py):
#: joining a whole burst made the peers work in lock-step (x1.03 of the raw echo), batches of 4,
#: 8, 16 and 32 frames gave x1.28, x1.37, x1.45 and x1.30: small batches keep both sides busy.
MAX_BATCH_FRAMES = 16


class FrameProtocol(asyncio.Protocol):
    #: Whether frames read while writing is paused wait in a backlog (the server's side does).
    _holds_backlog = False
    #: Whether only whole frames count as a sign of life for keepalive (the server's side does:
    #: a peer trickling the bytes of a frame it never finishes, slowloris, is then closed after
    #: keepalive's interval + timeout). Otherwise any bytes do (a client reading a large answer
    #: over a slow link is not declared dead mid-frame).
    _whole_frames_are_life = False

    __slots__ = (
        "_backlog",
        "_closing",
        "_decoder",
        "_drain_waiters",
        "_flush_scheduled",
        "_heard",
        "_keepalive",
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
    )

    def __init__(self, loop: asyncio.AbstractEventLoop, limits: Limits, keepalive: KeepaliveConfig | None) -> None:
        self._loop = loop
        self.limits = limits
        self._decoder = FrameDecoder(limits)
        self._transport: asyncio.Transport | None = None
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._wrote_this_tick = False
        self._flush_scheduled = False
        self._paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._closing = True  # until connection_made: nothing to write to yet
        self._heard = False
        self._keepalive = Keepalive(keepalive, loop.time()) if keepalive else None
        self._keepalive_timer: asyncio.TimerHandle | None = None
        self.closed: asyncio.Future[None] = loop.create_future()
        self.peer = "?"
        self.opened_at = 0.0
        self.heard_any = False  # the peer has sent at least one byte: it speaks to us
        self._backlog: collections.deque[Frame | Rejected] = collections.deque()

    # -- asyncio.Protocol ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, so no isinstance check here.
        self._transport = transport  # type: ignore[assignment]
        self._closing = False
        self.opened_at = self._loop.time()
        peername = transport.get_extra_info("peername")
        if isinstance(peername, tuple) and len(peername) >= 2:
            self.peer = f"{peername[0]}:{peername[1]}"
        if self._keepalive is not None:
            self._keepalive.heard(self._loop.time())
            self._arm_keepalive()

    def data_received(self, data: bytes) -> None:
        if not self._whole_frames_are_life:
            self._heard = True
        self.heard_any = True
        # A read starts a new burst: the first frame written in answer goes out at once, the rest
        # are joined and written when this read is handled (or at the end of the loop iteration).
        self._wrote_this_tick = False
        decoder = self._decoder
        try:
            frames = decoder.feed(data)
        except ProtocolError as exc:
            self.protocol_error(exc)
            return
        if frames or decoder.rejected:
            self._heard = True
        items: list[Any] = frames
        handle: Any = self.frame_received
        if decoder.rejected:  # rare: frames skipped for oversized metadata, handled in wire order
            items = _in_wire_order(frames, decoder.rejected)
            decoder.rejected = []
            handle = self.handle_item
        try:
            for index, frame in enumerate(items):
                handle(frame)
                if self._closing:
                    return
                if self._paused and self._holds_backlog:
                    # The peer is not reading our answers: keep the rest for resume_writing().
                    self._backlog.extend(items[index + 1 :])
                    break
            if self._pending:
                self._flush()
        except ProtocolError as exc:
            self.protocol_error(exc)
        except Exception as exc:
            # A bug must not leave a half-handled connection behind: log it, close this one only.
            log.exception("error handling a frame from %s; closing the connection", self.peer)
            self.protocol_error(InternalError(f"{type(exc).__name__}: {exc}"))

    def eof_received(self) -> bool | None:
        return None  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
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
    def frame_received(self, frame: Frame) -> None:
        raise NotImplementedError

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
    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        """Flush what is queued and close."""
        if self._closing or self._transport is None:
            self._closing = True
            return
        self._end_tick()
        self._closing = True
        self._transport.close()

    def abort(self) -> None:
        self._closing = True
        if self._transport is not None:
            self._transport.abort()

    def protocol_error(self, exc: ProtocolError) -> None:
        """The peer broke the protocol: tell it why in a GOAWAY, then close this connection only."""
        log.warning("protocol error from %s: %s; closing the connection", self.peer, exc)
        if not self._closing and self._transport is not None:
            self._end_tick()
            self._transport.write(
                encode_frame(
                    FrameType.GOAWAY,
                    0,
                    encode_goaway(self.goaway_last_stream_id(), exc.code, f"protocol error: {exc}"),
                )
            )
        self.close()

    def handle_item(self, item: Frame | Rejected) -> None:
        """A decoded frame, or one the decoder skipped (from a read or the backlog)."""
        if type(item) is Rejected:
            self.frame_rejected(item)
        else:
            self.frame_received(item)  # type: ignore[arg-type]

    def frame_rejected(self, rejected: Rejected) -> None:
        """A frame whose metadata is over this side's limit was skipped. By default that ends the
        connection; the server refuses just that call, the client fails just that call."""
        self.protocol_error(
            MetadataTooLarge(
                f"frame metadata of {rejected.metadata_length} bytes is over the limit of "
                f"{self.limits.max_metadata_size} bytes"
            )
        )

    # -- keepalive -------------------------------------------------------------------------
    def _arm_keepalive(self) -> None:
        assert self._keepalive is not None
        when = self._keepalive.next_check(self._loop.time())
        self._keepalive_timer = self._loop.call_at(when, self._keepalive_tick)

    def _keepalive_tick(self) -> None:
        self._keepalive_timer = None
        keepalive = self._keepalive
        if self._closing or keepalive is None:
            return
        now = self._loop.time()
        if self._heard:
            self._heard = False
            keepalive.heard(now)
        action = keepalive.tick(now)
        if action is KeepaliveAction.SEND_PING:
            self.send(encode_frame(FrameType.PING, 0, int(now * 1e6).to_bytes(8, "big")))
        elif action is KeepaliveAction.PEER_DEAD:
            self.peer_dead()
            return
        self._arm_keepalive()

    def peer_dead(self) -> None:
        """Keepalive found the peer silent past its timeout."""
        log.warning("peer %s sent nothing within the keepalive timeout; closing", self.peer)
        self.abort()

    def answer_ping(self, frame: Frame) -> None:
        self.send(encode_frame(FrameType.PONG, 0, frame.body))

    def goaway_last_stream_id(self) -> int:
        """What a GOAWAY from this side reports as processed; streams above it are safe to retry."""
        return 0

    def extra(self, name: str) -> Any:
        return self._transport.get_extra_info(name) if self._transport is not None else None


def _in_wire_order(frames: list[Frame], rejected: list[Rejected]) -> list[Frame | Rejected]:
    """The frames of one read with the skipped ones put back where they were on the wire."""
    items: list[Frame | Rejected] = []
    position = 0
    for skipped in rejected:
        items.extend(frames[position : skipped.before])
        position = max(position, skipped.before)
        items.append(skipped)
    items.extend(frames[position:])
    return items
