"""The caller's end of one multiplexed connection: many concurrent calls matched by stream id."""

from __future__ import annotations

import asyncio
import collections
import logging
import ssl as _ssl
from collections.abc import Callable
from typing import Any

from meshkit.errors import BadMagic, ProtocolError, RpcError, StatusCode
from meshkit.protocol.connection import (
    OPENING_PING,
    ConnectionBroken,
    GoAwayReceived,
    PongReceived,
    Role,
    decode_error_frame,
)
from meshkit.protocol.frames import Frame, FrameType
from meshkit.protocol.keepalive import KeepaliveConfig
from meshkit.protocol.limits import Limits
from meshkit.transport.base import FrameProtocol
from meshkit.transport.deadlines import DeadlineWheel
from meshkit.transport.streams import DEFAULT_STREAM_WINDOW, StreamReceiver

log = logging.getLogger("meshkit.transport")

_RESPONSE = int(FrameType.RESPONSE)
_ERROR = int(FrameType.ERROR)
_STREAM_DATA = int(FrameType.STREAM_DATA)
_Frame = Frame
_tuple: Any = tuple

__all__ = ["DEFAULT_STREAM_WINDOW", "OPENING_PING", "ClientConnection", "StreamReceiver", "connect"]


class ClientConnection(FrameProtocol):
    """Sends REQUEST frames and resolves each call's future when its answer arrives.

    ``on_state_change`` is told when the connection stops taking new calls (GOAWAY) and when it
    is lost, so the pool can replace it.
    """

    role = Role.CLIENT
    __slots__ = (
        "_compact_at",
        "_deadline_timer",
        "_deadlines",
        "_last_deadline",
        "_on_state_change",
        "_probe",
        "_wheel",
        "_wheel_used",
        "broken_by",
        "spoke_meshkit",
        "went_silent",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        limits: Limits,
        keepalive: KeepaliveConfig | None,
        on_state_change: Callable[[ClientConnection], None] | None = None,
        deadline_resolution: float = 0.005,
    ) -> None:
        super().__init__(loop, limits, keepalive)
        self._on_state_change = on_state_change
        #: Keepalive found the server silent (not a reset, not a close): it may be hung or cut off.
        self.went_silent = False
        #: The server answered a PING (the opening one, see connect()): it speaks meshkit.
        self.spoke_meshkit = False
        #: The protocol error this side closed the connection for, if it did.
        self.broken_by: ProtocolError | None = None
        self._probe: asyncio.Future[None] | None = None
        # Deadlines: calls with one timeout arrive in deadline order, so a FIFO with one timer at
        # its head covers them for the price of an append; the rare out-of-order deadline (a
        # shorter timeout, an inherited budget) goes to a wheel. Finished calls leave the FIFO
        # lazily; it is compacted when it grows past twice the calls in flight.
        # Entries are (deadline, stream id) only: holding the future would keep finished answers
        # alive. Stream ids are not reused while in flight, and compaction drops finished entries
        # long before the u32 id space could wrap onto one.
        self._deadlines: collections.deque[tuple[float, int]] = collections.deque()
        self._last_deadline = 0.0
        self._compact_at = 1024
        self._deadline_timer: asyncio.TimerHandle | None = None
        self._wheel: DeadlineWheel[int] = DeadlineWheel(loop.call_at, self._expire, deadline_resolution)
        self._wheel_used = False

    @property
    def pending(self) -> dict[int, Any]:
        """Calls in flight by stream id -> their future or :class:`StreamReceiver`."""
        return self.proto.streams

    @property
    def in_flight(self) -> int:
        return len(self.proto.streams)

    @property
    def has_capacity(self) -> bool:
        return self.proto.has_capacity

    def request(
        self,
        metadata: bytes,
        body: bytes,
        flags: int,
        deadline: float | None,
        trace: bytes | None = None,
        compressed: bool = False,
    ) -> tuple[int, asyncio.Future[Frame]]:
        """Send a unary REQUEST; the future resolves to the RESPONSE frame or fails with RpcError.
        ``compressed``: compress a body worth it. A body over the frame limit raises here."""
        if not self.usable:
            raise RpcError(StatusCode.UNAVAILABLE, f"connection to {self.peer} is closing", not_processed=True)
        fut: asyncio.Future[Frame] = self._loop.create_future()
        sid, data = self.proto.send_request(metadata, body, flags, fut, trace, 0, compressed)
        if deadline is not None:
            # Inline copy of the common case of _track_deadline: an in-order deadline, timer armed.
            if deadline >= self._last_deadline and self._deadline_timer is not None:
                self._last_deadline = deadline
                queue = self._deadlines
                queue.append((deadline, sid))
                if len(queue) > self._compact_at:
                    self._compact_deadlines()
            else:
                self._track_deadline(sid, deadline)
        self.send(data)
        return sid, fut

    def _track_deadline(self, sid: int, deadline: float) -> None:
        if deadline < self._last_deadline:
            self._wheel_used = True
            self._wheel.add(sid, deadline)
            return
        self._last_deadline = deadline
        queue = self._deadlines
        queue.append((deadline, sid))
        if self._deadline_timer is None:
            self._deadline_timer = self._loop.call_at(deadline, self._sweep_deadlines)
        elif len(queue) > self._compact_at:
            self._compact_deadlines()

    def _compact_deadlines(self) -> None:
        """Drop finished calls from the FIFO. The next compaction waits until the FIFO has grown by
        the calls now in flight plus 1024, so the work per call stays constant."""
        pending = self.proto.streams
        self._deadlines = collections.deque(e for e in self._deadlines if e[1] in pending)
        self._compact_at = 2 * len(self._deadlines) + 1024

    def _sweep_deadlines(self) -> None:
        """Expire due calls at the head of the FIFO, drop finished ones, re-arm at the new head."""
        self._deadline_timer = None
        now = self._loop.time()
        queue = self._deadlines
        pending = self.proto.streams
        while queue:
            deadline, sid = queue[0]
            if sid not in pending:
                queue.popleft()
            elif deadline <= now:
                queue.popleft()
                self._expire(sid)
            else:
                break
        if queue:
            self._deadline_timer = self._loop.call_at(queue[0][0], self._sweep_deadlines)

    def open_stream(
        self,
        metadata: bytes,
        body: bytes,
        flags: int,
        deadline: float | None,
        window: int,
        trace: bytes | None = None,
        compressed: bool = False,
    ) -> StreamReceiver:
        if self._closing or self.proto.draining:
            raise RpcError(StatusCode.UNAVAILABLE, f"connection to {self.peer} is closing", not_processed=True)
        receiver = StreamReceiver(self, window)
        sid, data = self.proto.send_request(metadata, body, flags, receiver, trace, window, compressed)
        receiver.stream_id = sid
        if deadline is not None:
            self._track_deadline(sid, deadline)
        self.send(data)
        return receiver

    def cancel_stream(self, stream_id: int) -> None:
        """The caller gave up on a call: forget it and tell the server to stop the handler."""
        data = self.proto.send_cancel(stream_id)
        if data:
            if self._wheel_used:
                self._wheel.discard(stream_id)
            self.send(data)
            self._maybe_finish_drain()

    def _expire(self, stream_id: int) -> None:
        # No CANCEL: a deadline given to request()/open_stream() travels in the call's metadata,
        # so the server holds the same one and stops the handler itself (a moment later: transit
        # is not deducted), answering, logging and counting it as DEADLINE_EXCEEDED. A CANCEL
        # would race that and make the server see a caller who merely gave up.
        self._fail(stream_id, RpcError(StatusCode.DEADLINE_EXCEEDED, "deadline exceeded while waiting for the answer"))

    def _fail(self, stream_id: int, err: RpcError) -> None:
        """End a call in flight with ``err`` without telling the server."""
        entry = self.proto.forget(stream_id)
        if entry is None:
            return
        _end(entry, err)
        self._maybe_finish_drain()

    def events_received(self, events: list[Any]) -> None:
        wheel_used = self._wheel_used
        for event in events:
            if event.__class__ is _tuple:
                sid, item, entry = event
                if wheel_used:
                    self._wheel.discard(sid)
                if item.__class__ is _Frame:
                    ftype = item.type
                    if ftype == _RESPONSE:
                        if not entry.done():
                            entry.set_result(item)
                    elif ftype == _STREAM_DATA:
                        entry.feed(item)
                    elif ftype == _ERROR:
                        _end(entry, decode_error_frame(item))
                    else:  # STREAM_END
                        entry.finish()
                else:
                    _end(entry, item)
            else:
                self._event(event)
                if self._closing:
                    return
        if self.proto.draining:
            self._maybe_finish_drain()

    def _event(self, event: Any) -> None:
        kind = event.__class__
        if kind is PongReceived:
            self.spoke_meshkit = True
            if self._probe is not None and not self._probe.done():
                self._probe.set_result(None)  # otherwise: any frame already counts as a sign of life
        elif kind is GoAwayReceived:
            self.usable = False
            if event.code:
                log.warning("server %s sent GOAWAY: %s %s", self.peer, StatusCode(event.code).name, event.message)
            # Streams the server never saw are safe to send elsewhere: fail them as not processed.
            for entry in event.unprocessed:
                _end(entry, RpcError(StatusCode.UNAVAILABLE, f"server {self.peer} is going away", not_processed=True))
            if self._on_state_change is not None:
                self._on_state_change(self)
            # Not here: finishing the drain closes the connection, and the frames that came in
            # the same read after the GOAWAY (the ERROR ending a stream) would never be handed
            # to their calls. events_received finishes it once the whole read is delivered.
        elif kind is ConnectionBroken:
            self.broken(event)

    def _maybe_finish_drain(self) -> None:
        if self.proto.draining and not self.proto.streams:
            self.close()

    @property
    def probe_timeout(self) -> float:
        """How long ``probe`` waits: the keepalive timeout (the same patience as for a PING)."""
        keepalive = self.proto.keepalive
        return keepalive.config.timeout if keepalive is not None else KeepaliveConfig().timeout

    async def probe(self, timeout: float) -> bool:
        """Send a PING and wait up to ``timeout`` for the answer: does the server answer at all?

        A TCP connect proves little (a kernel completes the handshake for a frozen process, a
        blackholing middlebox accepts anything); after a connection went silent, the pool asks
        this before it trusts a new one with calls, as gRPC waits for the server's SETTINGS."""
        if self._closing:
            return False
        if self.heard_any:
            return True
        probe = self._probe = self._loop.create_future()
        self.send(self.proto.send_ping(int(self._loop.time() * 1e6).to_bytes(8, "big")))
        try:
            async with asyncio.timeout(timeout):
                await probe
        except TimeoutError:
            return False
        finally:
            self._probe = None
        return not self._closing

    def protocol_error(self, exc: ProtocolError) -> None:
        self.broken_by = exc
        if self.foreign:
            # Not a broken meshkit server but another protocol's: the calls fail with that
            # (see lost()); nothing to tell a peer that cannot read a GOAWAY. The pool hears of
            # it now, not when the transport reports the close, so a call waiting for this
            # connection gets this reason rather than "no connection".
            self.close()
            if self._on_state_change is not None:
                self._on_state_change(self)
            return
        super().protocol_error(exc)

    @property
    def foreign(self) -> bool:
        """The peer answered in another protocol before it ever spoke meshkit."""
        return type(self.broken_by) is BadMagic and not self.spoke_meshkit

    def loss_error(self, exc: Exception | None) -> RpcError:
        """What the calls still in flight fail with when the connection goes."""
        broken = self.broken_by
        if type(broken) is BadMagic and not self.spoke_meshkit:
            # It never processed a meshkit call: a retry elsewhere is safe.
            return RpcError(
                StatusCode.UNAVAILABLE,
                f"{self.peer} is not a meshkit server: it answered {broken.preview!r}",
                {"reason": "not_meshkit"},
                not_processed=True,
            )
        if broken is not None:
            return RpcError(StatusCode.UNAVAILABLE, f"connection to {self.peer} closed: protocol error: {broken}")
        return RpcError(StatusCode.UNAVAILABLE, f"connection to {self.peer} lost" + (f": {exc}" if exc else ""))

    def lost(self, exc: Exception | None) -> None:
        if self._probe is not None and not self._probe.done():
            self._probe.set_result(None)  # probe() sees the connection closed
        self._wheel.close()
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()
            self._deadline_timer = None
        self._deadlines.clear()
        for entry in self.proto.close():
            _end(entry, self.loss_error(exc))
        if self._on_state_change is not None:
            self._on_state_change(self)

    def peer_dead(self) -> None:
        log.warning("server %s sent nothing within the keepalive timeout; failing its calls", self.peer)
        self.went_silent = True
        self.abort()


async def connect(
    host: str,
    port: int,
    *,
    limits: Limits | None = None,
    keepalive: KeepaliveConfig | None = None,
    ssl: _ssl.SSLContext | None = None,
    server_hostname: str | None = None,
    timeout: float = 5.0,
    on_state_change: Callable[[ClientConnection], None] | None = None,
) -> ClientConnection:
    """Open one connection; failures become ``RpcError(UNAVAILABLE, not_processed=True)``."""
    loop = asyncio.get_running_loop()
    lim = limits or Limits()
    kwargs: dict[str, Any] = {}
    if ssl is not None:
        kwargs["ssl"] = ssl
        kwargs["server_hostname"] = server_hostname or host
    try:
        async with asyncio.timeout(timeout):
            _, protocol = await loop.create_connection(
                lambda: ClientConnection(loop, lim, keepalive, on_state_change), host, port, **kwargs
            )
    except (OSError, TimeoutError, _ssl.SSLError) as exc:
        raise RpcError(
            StatusCode.UNAVAILABLE, f"cannot connect to {host}:{port}: {exc or type(exc).__name__}", not_processed=True
        ) from None
    protocol.send(OPENING_PING)
    return protocol


def _end(entry: Any, error: BaseException) -> None:
    """Fail one call in flight: a unary call's future or a stream's receiver."""
    if entry.__class__ is StreamReceiver:
        entry.finish(error)
    elif not entry.done():
        entry.set_exception(error)
