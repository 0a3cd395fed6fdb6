"""One side of a meshkit connection, sans-IO: bytes in, events out; calls in, bytes out.

Everything a connection knows lives here and nothing here touches a socket or a clock it is not
given: the decoder, which streams are open (and what the application attached to each), stream
ids, server-stream credit, GOAWAY and draining, keepalive, the trace trailer and compression of
bodies, and the answers the protocol gives by itself (a PONG, a refusal of a call the connection
cannot take, a GOAWAY naming the peer's protocol error). The asyncio classes in
:mod:`meshkit.transport` write what the ``send_*`` methods return and the :attr:`outgoing` bytes,
and hand what :meth:`Connection.receive` returns to the RPC layer. h11 and h2 have the same shape.

Every frame of a stream is checked against the table in :mod:`.states`. A unary call is the common
case and costs one dict entry for its life: a stream in :attr:`Connection.streams` and not in
``_streaming`` is OPEN (the table's state after REQUEST), a stream in neither is IDLE or CLOSED.

What :meth:`receive` returns, in wire order:

- on the server: REQUEST :class:`Frame` objects (``frame.trace`` split off, the body inflated),
  and :class:`Cancelled`, :class:`CreditGranted`, :class:`PongReceived`, :class:`GoAwayReceived`;
- on the client: ``(stream_id, frame_or_error, attachment)`` tuples for the answers of open calls (a
  RESPONSE, ERROR, STREAM_DATA or STREAM_END frame, or an :class:`~meshkit.errors.RpcError` that
  fails just that call), and :class:`PongReceived`, :class:`GoAwayReceived`;
- on either, last: :class:`ConnectionBroken` when the peer broke the protocol; :attr:`outgoing`
  then ends with the GOAWAY that tells it why, and the connection takes nothing more.

(Longer than our ~400-line habit on purpose: it is one state machine, and the receive loops of
the two roles and the senders that close streams must read together to be checked together.)
"""

from __future__ import annotations

import enum
import struct
from typing import Any, Final

from meshkit.errors import (
    FrameTooLarge,
    MalformedFrame,
    MetadataTooLarge,
    ProtocolError,
    RpcError,
    StatusCode,
)
from meshkit.protocol.compression import MIN_COMPRESS_SIZE, compress, decompress
from meshkit.protocol.decoder import FrameDecoder, Rejected
from meshkit.protocol.events import Cancelled, ConnectionBroken, CreditGranted, GoAwayReceived, PongReceived
from meshkit.protocol.frames import (
    HEADER,
    MAGIC,
    MAX_STREAM_ID,
    TRACE_CONTEXT_SIZE,
    VERSION,
    Flags,
    Frame,
    FrameType,
    encode_frame,
)
from meshkit.protocol.keepalive import Keepalive, KeepaliveAction, KeepaliveConfig
from meshkit.protocol.limits import Limits
from meshkit.protocol.messages import decode_credit, decode_error, decode_goaway, encode_credit, encode_error
from meshkit.protocol.messages import encode_goaway as _encode_goaway
from meshkit.protocol.states import TRANSITIONS, StreamEvent, StreamState, advance

__all__ = [
    "OPENING_PING",
    "Cancelled",
    "Connection",
    "ConnectionBroken",
    "CreditGranted",
    "GoAwayReceived",
    "PongReceived",
    "Role",
    "decode_error_frame",
]


class Role(enum.Enum):
    CLIENT = "client"
    SERVER = "server"


_REQUEST: Final = int(FrameType.REQUEST)
_RESPONSE: Final = int(FrameType.RESPONSE)
_ERROR: Final = int(FrameType.ERROR)
_STREAM_DATA: Final = int(FrameType.STREAM_DATA)
_STREAM_END: Final = int(FrameType.STREAM_END)
_CANCEL: Final = int(FrameType.CANCEL)
_PING: Final = int(FrameType.PING)
_PONG: Final = int(FrameType.PONG)
_GOAWAY: Final = int(FrameType.GOAWAY)
_CREDIT: Final = int(FrameType.CREDIT)
_COMPRESSED: Final = int(Flags.COMPRESSED)
_JSON: Final = int(Flags.JSON)
_STREAM: Final = int(Flags.STREAM)
_NOT_PROCESSED: Final = int(Flags.NOT_PROCESSED)
_TRACE: Final = int(Flags.TRACE)
_pack = HEADER.pack
#: The hot frames' headers from fewer parts (struct packs cost per field): the bytes before the
#: metadata length (magic, version, type, flags, reserved), or before the stream id.
_pack_after_prefix = struct.Struct(">6sHII").pack
_pack_ids = struct.Struct(">8sII").pack
_REQUEST_PREFIXES: Final = tuple(_pack(MAGIC, VERSION, _REQUEST, f, 0, 0, 0)[:6] for f in range(256))
_RESPONSE_PREFIX: Final = _pack(MAGIC, VERSION, _RESPONSE, 0, 0, 0, 0)[:8]

#: Frame type -> the table's event, for frames that belong to a stream.
_EVENT_OF: Final = {
    _REQUEST: StreamEvent.REQUEST,
    _RESPONSE: StreamEvent.RESPONSE,
    _ERROR: StreamEvent.ERROR,
    _STREAM_DATA: StreamEvent.STREAM_DATA,
    _STREAM_END: StreamEvent.STREAM_END,
    _CANCEL: StreamEvent.CANCEL,
    _CREDIT: StreamEvent.CREDIT,
}
#: The hot path reads these from the table once, instead of asking it per call.
_OPENED: Final = TRANSITIONS[(StreamState.IDLE, StreamEvent.REQUEST)]
assert TRANSITIONS[(_OPENED, StreamEvent.RESPONSE)] is StreamState.CLOSED
assert TRANSITIONS[(_OPENED, StreamEvent.ERROR)] is StreamState.CLOSED
_CLIENT_RECEIVES: Final = frozenset((_RESPONSE, _ERROR, _STREAM_DATA, _STREAM_END, _PING, _PONG, _GOAWAY))
_SERVER_RECEIVES: Final = frozenset((_REQUEST, _CANCEL, _CREDIT, _PING, _PONG, _GOAWAY))

#: The first frame a client sends on a new connection: a PING whose opaque body holds a blank
#: line. A meshkit server answers it with a PONG; a server of a text protocol (HTTP/1, Redis,
#: SMTP...) reads the frame up to that line and answers at once in its own protocol, which fails
#: the calls as "not a meshkit server" instead of leaving them waiting for their deadline.
OPENING_PING: Final = encode_frame(FrameType.PING, 0, b"MK\r\n\r\n\r\n")


class Connection:
    """The protocol state of one side of one connection (see the module docstring)."""

    __slots__ = (
        "_credit",
        "_decoder",
        "_max_body",
        "_next_id",
        "_streaming",
        "closed",
        "draining",
        "error",
        "goaway_received",
        "heard",
        "keepalive",
        "last_stream_id",
        "limits",
        "outgoing",
        "role",
        "streams",
    )

    def __init__(
        self,
        role: Role,
        limits: Limits | None = None,
        keepalive: KeepaliveConfig | None = None,
        now: float = 0.0,
    ) -> None:
        self.role = role
        self.limits = limits = limits or Limits()
        self._decoder = FrameDecoder(limits)
        self._max_body = limits.max_frame_size
        #: Open streams -> what the application attached (None until it attaches something).
        self.streams: dict[int, Any] = {}
        #: Server streams past REQUEST -> their state; a stream only in ``streams`` is OPEN.
        self._streaming: dict[int, StreamState] = {}
        #: Server streams -> messages the caller still allows (client: messages it granted).
        self._credit: dict[int, int] = {}
        self._next_id = 1
        #: Server: a GOAWAY went out, no new calls. Client: a GOAWAY came in.
        self.draining = False
        self.goaway_received = False
        #: Server: the highest REQUEST id seen (all above it are unprocessed). Client: the GOAWAY's.
        self.last_stream_id = 0
        self.closed = False
        self.error: ProtocolError | None = None
        #: Bytes the connection decided to send by itself; the I/O layer writes and clears them.
        self.outgoing: list[bytes] = []
        self.keepalive = Keepalive(keepalive, now) if keepalive is not None else None
        #: A whole frame arrived since the I/O layer last looked (keepalive's sign of life).
        self.heard = False

    # -- receiving -------------------------------------------------------------------------
    def receive(self, data: bytes) -> list[Any]:
        """Feed bytes from the peer; the events they make, in wire order (module docstring)."""
        if self.closed:
            return []
        decoder = self._decoder
        try:
            frames: list[Any] = decoder.feed(data)
        except ProtocolError as exc:
            return [self._broken(exc)]
        if not frames and not decoder.rejected:
            return frames
        self.heard = True
        mixed = bool(decoder.rejected)
        if mixed:
            frames = _in_wire_order(frames, decoder.rejected)
            decoder.rejected = []
        if self.role is Role.SERVER:
            return self._server_events(frames, mixed)
        return self._client_events(frames, mixed)

    def _server_events(self, frames: list[Any], mixed: bool) -> list[Any]:
        events: list[Any] = []
        append = events.append
        streams = self.streams
        max_streams = self.limits.max_concurrent_streams
        for frame in frames:
            if mixed and frame.__class__ is Rejected:
                if not self._reject_request(frame):
                    append(self._broken(_metadata_error(frame, self.limits)))
                    return events
                continue
            ftype = frame.type
            if ftype == _REQUEST:
                sid = frame.stream_id
                if sid in streams or not sid or self.draining or len(streams) >= max_streams:
                    refused = self._refused_request(sid)
                    if refused is not None:
                        append(refused)
                        return events
                    continue
                flags = frame.flags
                if flags:
                    if flags & _TRACE and not self._split_trace(frame):
                        append(
                            self._broken(
                                MalformedFrame(
                                    f"TRACE flag on a REQUEST whose metadata is under {TRACE_CONTEXT_SIZE} bytes"
                                )
                            )
                        )
                        return events
                    if flags & _COMPRESSED and not self._inflate_request(frame):
                        continue
                    if flags & _STREAM:
                        self._streaming[sid] = _OPENED
                if sid > self.last_stream_id:
                    self.last_stream_id = sid
                streams[sid] = None  # IDLE -> OPEN (_OPENED)
                append(frame)
            elif ftype == _CANCEL:
                sid = frame.stream_id
                if sid in streams:
                    self._advance(sid, StreamEvent.CANCEL)
                    append(Cancelled(sid, self._close(sid)))
            elif ftype == _CREDIT:
                sid = frame.stream_id
                if sid in self._streaming:
                    try:
                        granted = decode_credit(frame.body)
                        self._advance(sid, StreamEvent.CREDIT)
                    except ProtocolError as exc:
                        append(self._broken(exc))
                        return events
                    self._credit[sid] = self._credit.get(sid, 0) + granted
                    append(CreditGranted(sid, streams[sid]))
            elif not self._connection_frame(frame, events, _SERVER_RECEIVES):
                return events
        return events

    def _client_events(self, frames: list[Any], mixed: bool) -> list[Any]:
        events: list[Any] = []
        append = events.append
        streams = self.streams
        streaming = self._streaming
        for frame in frames:
            if mixed and frame.__class__ is Rejected:
                event = self._reject_answer(frame)
                if event is not None:
                    append(event)
                    if event.__class__ is ConnectionBroken:
                        return events
                continue
            ftype = frame.type
            if ftype == _RESPONSE and not frame.flags and not streaming:
                # The common answer: a plain unary RESPONSE, no server stream open at all.
                sid = frame.stream_id
                if sid in streams:
                    append((sid, frame, streams.pop(sid)))  # OPEN -> CLOSED
            elif ftype == _RESPONSE or ftype == _ERROR:  # noqa: SIM109 - two constants, no tuple built
                sid = frame.stream_id
                if sid not in streams:
                    continue  # an answer to a call given up on (cancelled, timed out): expected
                if sid in streaming:
                    state = streaming.pop(sid)
                    attachment = streams.pop(sid)
                    self._credit.pop(sid, None)
                    if ftype == _RESPONSE:
                        append((sid, MalformedFrame("RESPONSE on a streaming call"), attachment))
                        continue
                    advance(state, StreamEvent.ERROR)
                else:
                    attachment = streams.pop(sid)  # OPEN -> CLOSED
                if frame.flags & _COMPRESSED:
                    try:
                        frame.body = decompress(frame.body, self.limits.max_decompressed_size)
                    except (FrameTooLarge, MalformedFrame) as exc:
                        error = RpcError(StatusCode.INTERNAL, f"the answer could not be decompressed: {exc}")
                        append((sid, error, attachment))
                        continue
                    frame.flags ^= _COMPRESSED
                append((sid, frame, attachment))
            elif ftype in (_STREAM_DATA, _STREAM_END):
                sid = frame.stream_id
                if sid not in streams:
                    continue
                if sid not in streaming:
                    append(self._broken(MalformedFrame(f"stream frame on unary call {sid}")))
                    return events
                if ftype == _STREAM_DATA:
                    left = self._credit[sid] - 1
                    if left < 0:
                        append(
                            self._broken(
                                MalformedFrame(f"stream {sid}: peer sent more messages than the granted credit")
                            )
                        )
                        return events
                    self._credit[sid] = left
                    streaming[sid] = advance(streaming[sid], StreamEvent.STREAM_DATA)
                    if frame.flags & _COMPRESSED:
                        try:
                            frame.body = decompress(frame.body, self.limits.max_decompressed_size)
                        except (FrameTooLarge, MalformedFrame) as exc:
                            append(self._broken(exc))
                            return events
                        frame.flags ^= _COMPRESSED
                    append((sid, frame, streams[sid]))
                else:
                    advance(streaming.pop(sid), StreamEvent.STREAM_END)
                    self._credit.pop(sid, None)
                    append((sid, frame, streams.pop(sid)))
            elif not self._connection_frame(frame, events, _CLIENT_RECEIVES):
                return events
        return events

    def _refused_request(self, sid: int) -> ConnectionBroken | None:
        """A REQUEST the connection does not hand on: a violation, or a refusal it answers itself."""
        if sid == 0:
            return self._broken(MalformedFrame("REQUEST on stream 0"))
        if sid in self.streams:
            return self._broken(MalformedFrame(f"REQUEST reuses stream {sid}, which is still open"))
        if self.draining:
            self._refuse(sid, StatusCode.UNAVAILABLE, "server is shutting down")
        else:
            limit = self.limits.max_concurrent_streams
            self._refuse(
                sid, StatusCode.RESOURCE_EXHAUSTED, f"too many concurrent calls on this connection (limit {limit})"
            )
        return None

    @staticmethod
    def _split_trace(frame: Frame) -> bool:
        """Move the binary trace context off the end of a REQUEST's metadata (protocol.md, "Flags")."""
        md = frame.metadata
        if len(md) < TRACE_CONTEXT_SIZE:
            return False
        frame.trace = md[-TRACE_CONTEXT_SIZE:]
        frame.metadata = md[:-TRACE_CONTEXT_SIZE]
        frame.flags ^= _TRACE
        return True

    def _inflate_request(self, frame: Frame) -> bool:
        """Inflate a compressed REQUEST body; one that will not inflate is refused (not processed).
        The flag stays: it tells the dispatcher the caller takes compressed answers."""
        try:
            frame.body = decompress(frame.body, self.limits.max_decompressed_size)
        except (FrameTooLarge, MalformedFrame) as exc:
            self._refuse(frame.stream_id, StatusCode.INVALID_ARGUMENT, f"bad request body: {exc}")
            return False
        return True

    def _connection_frame(self, frame: Frame, events: list[Any], allowed: frozenset[int]) -> bool:
        """PING, PONG, GOAWAY or a frame this side never receives; False once the connection broke."""
        ftype = frame.type
        if ftype not in allowed:
            sender = "server" if self.role is Role.CLIENT else "client"
            events.append(self._broken(MalformedFrame(f"a {sender} does not send {FrameType(ftype).name} frames")))
            return False
        if ftype == _PING:
            self.outgoing.append(encode_frame(_PONG, 0, frame.body))
        elif ftype == _PONG:
            events.append(PongReceived(frame.body))
        else:  # GOAWAY
            try:
                body = decode_goaway(frame.body)
            except ProtocolError as exc:
                events.append(self._broken(exc))
                return False
            unprocessed: tuple[Any, ...] = ()
            if self.role is Role.CLIENT:
                self.goaway_received = self.draining = True
                self.last_stream_id = body.last_stream_id
                # Streams the server never saw are safe to send elsewhere.
                unprocessed = tuple(self._close(sid) for sid in list(self.streams) if sid > body.last_stream_id)
            events.append(GoAwayReceived(body.last_stream_id, body.code, body.message, unprocessed))
        return True

    def _reject_request(self, rejected: Rejected) -> bool:
        """Server: a REQUEST whose metadata is over the limit is refused, the connection kept
        (its framing was intact, so nothing else is lost). False: not a REQUEST one may refuse."""
        sid = rejected.stream_id
        if rejected.type != _REQUEST or sid == 0 or sid in self.streams:
            return False
        if self.draining:
            self._refuse(sid, StatusCode.UNAVAILABLE, "server is shutting down")
        else:
            # INVALID_ARGUMENT, not RESOURCE_EXHAUSTED: sending it again (another instance, a
            # retry policy) would be refused the same way; the caller must send less.
            self._refuse(
                sid,
                StatusCode.INVALID_ARGUMENT,
                f"call metadata of {rejected.metadata_length} bytes is over this server's limit of "
                f"{self.limits.max_metadata_size} bytes",
            )
        return True

    def _reject_answer(self, rejected: Rejected) -> Any:
        """Client: an answer whose metadata is over the limit fails that call, not the connection.
        An ERROR that said "not processed" keeps saying so (a retry is safe)."""
        sid = rejected.stream_id
        ftype = rejected.type
        if sid == 0 or ftype not in (_RESPONSE, _ERROR, _STREAM_DATA, _STREAM_END):
            return self._broken(_metadata_error(rejected, self.limits))
        if sid not in self.streams:
            return None
        attachment = self._close(sid)
        if ftype == _STREAM_DATA:  # the other kinds end the call on the server's side already
            self.outgoing.append(_pack(MAGIC, VERSION, _CANCEL, 0, 0, sid, 0))
        error = RpcError(
            StatusCode.RESOURCE_EXHAUSTED,
            f"the answer's metadata of {rejected.metadata_length} bytes is over this client's limit of "
            f"{self.limits.max_metadata_size} bytes",
            not_processed=ftype == _ERROR and bool(rejected.flags & _NOT_PROCESSED),
        )
        return (sid, error, attachment)

    def _refuse(self, sid: int, code: StatusCode, message: str) -> None:
        """Answer a REQUEST the connection will not hand on; the handler never ran."""
        self.outgoing.append(encode_frame(_ERROR, sid, encode_error(code, message), b"", _NOT_PROCESSED))

    def protocol_error(self, error: ProtocolError) -> ConnectionBroken:
        """This side found ``error`` in what the peer sent (here or above, say a body the RPC layer
        could not read): the connection takes nothing more and :attr:`outgoing` gets the GOAWAY."""
        return self._broken(error)

    def _broken(self, error: ProtocolError) -> ConnectionBroken:
        if self.closed:
            return ConnectionBroken(error)
        self.closed = True
        self.error = error
        last = self.last_stream_id if self.role is Role.SERVER else 0
        self.outgoing.append(encode_frame(_GOAWAY, 0, _encode_goaway(last, error.code, f"protocol error: {error}")))
        return ConnectionBroken(error)

    def _advance(self, sid: int, event: StreamEvent) -> StreamState:
        """Move stream ``sid`` (open) by ``event`` through the table; a CLOSED stream is forgotten."""
        state = advance(self._streaming.get(sid, _OPENED), event)
        if state is StreamState.CLOSED:
            self._streaming.pop(sid, None)
        elif sid in self._streaming or state is not _OPENED:
            self._streaming[sid] = state
        return state

    def _close(self, sid: int) -> Any:
        """Forget an open stream; returns its attachment."""
        self._streaming.pop(sid, None)
        self._credit.pop(sid, None)
        return self.streams.pop(sid)

    # -- the application's side: streams -------------------------------------------------
    def attach(self, stream_id: int, attachment: Any) -> bool:
        """Keep ``attachment`` with an open stream; events about the stream carry it. False: the
        stream closed already (a CANCEL read together with its REQUEST, say): end the work."""
        if stream_id in self.streams:
            self.streams[stream_id] = attachment
            return True
        return False

    def forget(self, stream_id: int) -> Any:
        """End an open stream without a frame (a caller's deadline: the server holds the same
        one and stops by itself). Returns its attachment, or None if it was not open."""
        if stream_id not in self.streams:
            return None
        return self._close(stream_id)

    def state(self, stream_id: int) -> StreamState:
        """Where ``stream_id`` is in the table (IDLE covers closed ones: their ids may be reused)."""
        if stream_id not in self.streams:
            return StreamState.IDLE
        return self._streaming.get(stream_id, _OPENED)

    def credit(self, stream_id: int) -> int:
        """Server: STREAM_DATA messages the caller allows now on ``stream_id``."""
        return self._credit.get(stream_id, 0)

    @property
    def open_streams(self) -> int:
        return len(self.streams)

    @property
    def has_capacity(self) -> bool:
        return len(self.streams) < self.limits.max_concurrent_streams

    # -- the client's frames ---------------------------------------------------------------
    def send_request(
        self,
        metadata: bytes,
        body: bytes,
        flags: int = 0,
        attachment: Any = None,
        trace: bytes | None = None,
        window: int = 0,
        compressed: bool = False,
    ) -> tuple[int, bytes]:
        """Open a stream with a REQUEST: ``(stream id, bytes)``. ``trace`` (the 25-byte binary
        trace context) trails the metadata; ``window`` > 0 makes it a server stream that may
        send that many messages before the next CREDIT; ``compressed``: compress a body worth it.
        A body over the frame limit (after compression) raises RESOURCE_EXHAUSTED and opens
        nothing. The caller checks :attr:`draining` first."""
        if compressed and len(body) >= MIN_COMPRESS_SIZE:
            body = compress(body)
            flags |= _COMPRESSED
        if len(body) > self._max_body:
            # Checked before a stream exists, after compression (what goes on the wire counts).
            raise self._too_large("request", len(body))
        streams = self.streams
        sid = self._next_id
        if sid in streams or sid >= MAX_STREAM_ID:
            sid = self._allocate_id()
        else:
            self._next_id = sid + 1
        if window or trace is not None:
            if trace is not None and (type(trace) is not bytes or len(trace) != TRACE_CONTEXT_SIZE):
                raise ValueError(f"a trace context is {TRACE_CONTEXT_SIZE} bytes, got {trace!r:.60}")
            if window:
                flags |= _STREAM
                self._streaming[sid] = _OPENED
                self._credit[sid] = window
            if trace is not None:
                flags |= _TRACE
                metadata += trace
        streams[sid] = attachment
        header = _pack_after_prefix(_REQUEST_PREFIXES[flags], len(metadata), sid, len(body))
        return sid, b"".join((header, metadata, body))

    def _too_large(self, what: str, size: int) -> RpcError:
        return RpcError(
            StatusCode.RESOURCE_EXHAUSTED, f"{what} of {size} bytes is over the {self._max_body}-byte frame limit"
        )

    def _allocate_id(self) -> int:
        """The next free stream id in 1..2^32-2, wrapping."""
        sid = self._next_id
        streams = self.streams
        while sid in streams or not 0 < sid < MAX_STREAM_ID:
            sid = sid + 1 if 0 < sid < MAX_STREAM_ID - 1 else 1
        self._next_id = sid + 1
        return sid

    def send_cancel(self, stream_id: int) -> bytes:
        """The caller gives up on a call: forget it and tell the server (b"" if not open)."""
        if stream_id not in self.streams:
            return b""
        self._close(stream_id)
        return _pack(MAGIC, VERSION, _CANCEL, 0, 0, stream_id, 0)

    def send_credit(self, stream_id: int, granted: int) -> bytes:
        """Allow ``granted`` more messages on a server stream (b"" once it ended)."""
        if stream_id not in self._streaming:
            return b""
        self._credit[stream_id] += granted
        return encode_frame(_CREDIT, stream_id, encode_credit(granted))

    # -- the server's frames ---------------------------------------------------------------
    def send_response(self, stream_id: int, body: bytes, json: bool = False, compressed: bool = False) -> bytes:
        """The unary answer; closes the stream. ``compressed``: compress a body worth it. A body
        over this side's frame limit is answered as a RESOURCE_EXHAUSTED ERROR instead: sent,
        the peer (with the same limit) would have to close the connection every call shares."""
        self.streams.pop(stream_id, None)  # OPEN -> CLOSED
        if not json and not compressed and len(body) <= self._max_body:
            return _pack_ids(_RESPONSE_PREFIX, stream_id, len(body)) + body
        flags = _JSON if json else 0
        if compressed and len(body) >= MIN_COMPRESS_SIZE:
            body = compress(body)
            flags |= _COMPRESSED
        if len(body) > self._max_body:
            error = self._too_large("result", len(body))
            return encode_frame(_ERROR, stream_id, encode_error(error.code, error.message))
        return _pack(MAGIC, VERSION, _RESPONSE, flags, 0, stream_id, len(body)) + body

    def send_error(
        self, stream_id: int, code: StatusCode, message: str, details: Any = None, *, not_processed: bool = False
    ) -> bytes:
        """An ERROR answer; closes the stream. ``not_processed``: the handler never ran."""
        if stream_id in self._streaming:
            self._advance(stream_id, StreamEvent.ERROR)
        self._credit.pop(stream_id, None)
        self.streams.pop(stream_id, None)
        return encode_frame(
            _ERROR, stream_id, encode_error(code, message, details), b"", _NOT_PROCESSED if not_processed else 0
        )

    def send_error_body(self, stream_id: int, body: bytes, *, not_processed: bool = False) -> bytes:
        """An ERROR answer whose body is encoded already (a refusal the shedder keeps ready)."""
        self._credit.pop(stream_id, None)
        self._streaming.pop(stream_id, None)
        self.streams.pop(stream_id, None)
        return encode_frame(_ERROR, stream_id, body, b"", _NOT_PROCESSED if not_processed else 0)

    def send_stream_data(self, stream_id: int, body: bytes, json: bool = False) -> bytes:
        """One message of a server stream; uses one credit (the caller waits for :meth:`credit`)."""
        left = self._credit.get(stream_id, 0)
        if left <= 0:
            raise RuntimeError(f"stream {stream_id} has no credit; wait for CreditGranted")
        if len(body) > self._max_body:
            # The stream stays open: its sender ends it with this error.
            raise self._too_large("stream message", len(body))
        self._credit[stream_id] = left - 1
        self._streaming[stream_id] = advance(self._streaming.get(stream_id, _OPENED), StreamEvent.STREAM_DATA)
        return encode_frame(_STREAM_DATA, stream_id, body, b"", _JSON if json else 0)

    def send_stream_end(self, stream_id: int) -> bytes:
        if stream_id in self.streams:
            self._advance(stream_id, StreamEvent.STREAM_END)
            self._close(stream_id)
        return _pack(MAGIC, VERSION, _STREAM_END, 0, 0, stream_id, 0)

    def open_credit(self, stream_id: int, credit: int) -> None:
        """Server: the messages a new server stream may send before its first CREDIT."""
        if stream_id in self.streams:
            self._credit[stream_id] = credit

    def send_goaway(self, code: StatusCode = StatusCode.OK, message: str = "") -> bytes:
        """Server: take no new calls; the peer learns which ones will still be answered."""
        self.draining = True
        return encode_frame(_GOAWAY, 0, _encode_goaway(self.last_stream_id, code, message))

    # -- either side -----------------------------------------------------------------------
    def send_ping(self, body: bytes) -> bytes:
        return encode_frame(_PING, 0, body)

    def tick(self, now: float) -> KeepaliveAction:
        """Keepalive at ``now``: a PING to send goes to :attr:`outgoing`."""
        keepalive = self.keepalive
        if keepalive is None or self.closed:
            return KeepaliveAction.NOTHING
        if self.heard:
            self.heard = False
            keepalive.heard(now)
        action = keepalive.tick(now)
        if action is KeepaliveAction.SEND_PING:
            self.outgoing.append(encode_frame(_PING, 0, int(now * 1e6).to_bytes(8, "big")))
        return action

    def take_outgoing(self) -> bytes:
        """The bytes queued by the connection itself, joined; the queue is then empty."""
        out = self.outgoing
        if not out:
            return b""
        data = b"".join(out) if len(out) > 1 else out[0]
        out.clear()
        return data

    def close(self) -> list[Any]:
        """The connection is gone: every open stream's attachment, for the application to end."""
        self.closed = True
        attachments = list(self.streams.values())
        self.streams.clear()
        self._streaming.clear()
        self._credit.clear()
        return attachments


def _metadata_error(rejected: Rejected, limits: Limits) -> ProtocolError:
    return MetadataTooLarge(
        f"frame metadata of {rejected.metadata_length} bytes is over the limit of {limits.max_metadata_size} bytes"
    )


def _in_wire_order(frames: list[Frame], rejected: list[Rejected]) -> list[Any]:
    """The frames of one read with the skipped ones put back where they were on the wire."""
    items: list[Any] = []
    position = 0
    for skipped in rejected:
        items.extend(frames[position : skipped.before])
        position = max(position, skipped.before)
        items.append(skipped)
    items.extend(frames[position:])
    return items


def decode_error_frame(frame: Frame) -> RpcError:
    """The :class:`RpcError` an ERROR frame carries, with its not-processed flag."""
    return decode_error(frame.body, not_processed=bool(frame.flags & _NOT_PROCESSED))
