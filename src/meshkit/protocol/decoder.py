"""The frame decoder: a state machine fed arbitrary byte chunks that emits whole frames.

This is what solves TCP's "sticky packets": reads split and join frames at random, so the decoder
keeps whatever is incomplete and hands out only whole frames. Every limit is checked as soon as the
header is complete, before the body is waited for, so a peer that announces a 2 GiB frame is turned
away after 16 bytes rather than after the machine runs out of memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from meshkit.errors import (
    BadMagic,
    FrameTooLarge,
    MalformedFrame,
    MetadataTooLarge,
    UnknownFrameType,
    UnsupportedVersion,
)
from meshkit.protocol.frames import (
    FRAME_TYPE_LIMIT,
    HEADER,
    HEADER_FAST,
    HEADER_SIZE,
    KNOWN_FLAGS,
    MAGIC,
    MAGIC_U16,
    VERSION,
    Frame,
)
from meshkit.protocol.limits import Limits

_unpack_from = HEADER.unpack_from


class FrameDecoder:
    """Feed bytes in, get frames out. Raises a :class:`~meshkit.errors.ProtocolError` on bad input.

    After an error the decoder is poisoned: the stream of bytes has lost its framing and nothing
    after the bad frame can be trusted, so every later :meth:`feed` raises the same error.
    """

    __slots__ = ("_buffer", "_error", "_max_body", "_max_metadata", "_skip", "rejected")

    def __init__(self, limits: Limits | None = None) -> None:
        limits = limits or Limits()
        self._max_body = limits.max_frame_size
        self._max_metadata = limits.max_metadata_size
        self._buffer = bytearray()
        self._error: Exception | None = None
        self._skip = 0  # bytes of a rejected frame still to discard
        #: Frames skipped because their metadata is over the limit, for the connection to answer
        #: (the caller takes them and clears the list). Their framing is intact, so one caller's
        #: oversized metadata costs that call, not the connection every other call shares.
        self.rejected: list[Rejected] = []

    @property
    def buffered(self) -> int:
        """Bytes held that do not yet form a whole frame."""
        return len(self._buffer)

    @property
    def skipping(self) -> int:
        """Bytes of a rejected frame still to come and be discarded (never held)."""
        return self._skip

    def feed(self, data: bytes) -> list[Frame]:
        """Add ``data`` and return every frame that is now complete, in order."""
        if self._error is not None:
            raise self._error
        if type(data) is not bytes:
            data = bytes(data)  # frames must not share a buffer the caller may reuse
        if self._skip:
            if len(data) <= self._skip:
                self._skip -= len(data)
                return []
            data = data[self._skip :]
            self._skip = 0
        buffer = self._buffer
        if buffer:
            buffer += data
            view: bytes | bytearray = buffer
        else:
            view = data
        end = len(view)
        pos = 0
        frames: list[Frame] = []
        append = frames.append
        max_body = self._max_body
        max_metadata = self._max_metadata
        while end - pos >= HEADER_SIZE:
            magic, version, frame_type, flags, reserved, md_len, stream_id, body_len = _unpack_fast(view, pos)
            if (
                magic != MAGIC_U16
                or version != VERSION
                or reserved
                or flags & _UNKNOWN_FLAGS
                or not 0 < frame_type < FRAME_TYPE_LIMIT
                or body_len > max_body
                or md_len > max_metadata
            ):
                error = _header_error(view, pos, max_body, max_metadata)
                if type(error) is MetadataTooLarge:
                    # Oversized metadata is the header's only fault (it is checked last): skip
                    # the frame without keeping it (no more bytes than a frame may have anyway)
                    # and report it; the bytes after it are a frame boundary.
                    self.rejected.append(Rejected(frame_type, flags, stream_id, md_len, body_len, len(frames)))
                    total = HEADER_SIZE + md_len + body_len
                    if end - pos >= total:
                        pos += total
                        continue
                    self._skip = total - (end - pos)
                    pos = end
                    break
                self._error = error
                buffer.clear()
                raise error
            body_start = pos + HEADER_SIZE + md_len
            frame_end = body_start + body_len
            if frame_end > end:
                break
            append(
                Frame(
                    frame_type,
                    flags,
                    stream_id,
                    view[pos + HEADER_SIZE : body_start] if md_len else b"",  # type: ignore[arg-type]
                    view[body_start:frame_end],  # type: ignore[arg-type]  # bytearray: made bytes below
                )
            )
            pos = frame_end
        if 0 < end - pos < HEADER_SIZE and (view[pos] != _M or (end - pos > 1 and view[pos + 1] != _K)):
            # A partial header that cannot become a frame: say so now rather than wait for the
            # rest (a peer speaking another protocol may send a short line and wait for ever).
            error = _bad_magic(view, pos)
            self._error = error
            buffer.clear()
            raise error
        if buffer:
            del buffer[:pos]
            if frames and buffer is view:
                # Frames sliced from a bytearray are bytearrays; hand out immutable bytes.
                for frame in frames:
                    frame.body = bytes(frame.body)
                    if frame.metadata:
                        frame.metadata = bytes(frame.metadata)
        elif pos < end:
            buffer += view[pos:] if pos else view
        return frames


_unpack_fast = HEADER_FAST.unpack_from
_UNKNOWN_FLAGS = ~KNOWN_FLAGS


@dataclass(frozen=True, slots=True)
class Rejected:
    """A frame the decoder skipped: its metadata (``metadata_length`` bytes) is over the limit."""

    type: int
    flags: int
    stream_id: int
    metadata_length: int
    body_length: int
    #: Where it was on the wire: after this many of the frames the same feed() returned (a
    #: connection handles them in wire order: a REQUEST reusing a stream id must be judged after
    #: the frames before it, say).
    before: int = field(default=0, compare=False)

    @property
    def size(self) -> int:
        """The whole frame's bytes on the wire."""
        return HEADER_SIZE + self.metadata_length + self.body_length


_M, _K = MAGIC
#: How many of the offending bytes a BadMagic keeps, to show what the peer speaks instead.
PREVIEW_SIZE = 48


def _bad_magic(view: bytes | bytearray, pos: int) -> BadMagic:
    preview = bytes(view[pos : pos + PREVIEW_SIZE])
    error = BadMagic(f"bad magic {preview[:2]!r} at a frame boundary; expected {MAGIC!r}")
    error.preview = preview
    return error


def _header_error(view: bytes | bytearray, pos: int, max_body: int, max_metadata: int) -> Exception:
    """The specific error for a header that failed the combined fast check."""
    magic, version, frame_type, flags, md_len, _stream_id, body_len = _unpack_from(view, pos)
    if magic != MAGIC:
        return _bad_magic(view, pos)
    if version != VERSION:
        return UnsupportedVersion(f"protocol version {version} is not supported (this build speaks {VERSION})")
    if not 0 < frame_type < FRAME_TYPE_LIMIT:
        return UnknownFrameType(f"unknown frame type {frame_type}")
    if flags & ~KNOWN_FLAGS:
        return MalformedFrame(f"unknown flag bits {flags & ~KNOWN_FLAGS:#x} on frame type {frame_type}")
    if view[pos + 5] != 0:
        return MalformedFrame("reserved header byte is not zero")
    if body_len > max_body:
        return FrameTooLarge(f"frame body of {body_len} bytes is over the limit of {max_body} bytes")
    return MetadataTooLarge(f"frame metadata of {md_len} bytes is over the limit of {max_metadata} bytes")
