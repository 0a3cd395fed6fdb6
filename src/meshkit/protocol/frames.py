"""Frame layout, frame types and flags, and the encoder.

Every frame is a fixed 16-byte header followed by ``metadata_length`` bytes of metadata (a msgpack
map) and ``body_length`` bytes of body::

     0      2     3     4     5     6        8           12          16
     +------+-----+-----+-----+-----+--------+-----------+-----------+
     | "MK" | ver | typ | flg | rsv | mdlen  | stream id | body len  |
     +------+-----+-----+-----+-----+--------+-----------+-----------+
       u8x2   u8    u8    u8    u8    u16be    u32be       u32be

The lengths sit in the header so the decoder can refuse an oversized frame before it buffers a byte
of it, and the magic plus version let it refuse a peer that speaks something else at once rather
than wait for bytes that will never make sense. docs/protocol.md documents every byte.
"""

from __future__ import annotations

import enum
import struct
from typing import Final

import msgspec

MAGIC: Final = b"MK"
VERSION: Final = 1
HEADER = struct.Struct(">2sBBBxHII")
#: The same 16 bytes read for speed: magic as one u16, the reserved byte kept to check it is zero.
HEADER_FAST = struct.Struct(">HBBBBHII")
MAGIC_U16: Final = 0x4D4B
HEADER_SIZE: Final = HEADER.size  # 16
MAX_METADATA_LENGTH: Final = 0xFFFF
MAX_STREAM_ID: Final = 0xFFFFFFFF


class FrameType(enum.IntEnum):
    """What a frame means. Stream 0 carries only connection-level frames (PING, PONG, GOAWAY)."""

    REQUEST = 1  # opens a stream: metadata names service and method; body holds the arguments
    RESPONSE = 2  # the unary result; closes the stream
    ERROR = 3  # the call failed: body is {code, message, details}; closes the stream
    STREAM_DATA = 4  # one message of a server stream
    STREAM_END = 5  # the server stream finished cleanly; closes the stream
    CANCEL = 6  # the caller gave up: the handler is cancelled, no answer is sent
    PING = 7  # keepalive probe; body is 8 opaque bytes echoed in the PONG
    PONG = 8
    GOAWAY = 9  # the sender takes no new streams; body is {last_stream_id, code, message}
    CREDIT = 10  # the caller allows N more STREAM_DATA messages; body is a u32


class Flags(enum.IntFlag):
    """Bits of the flags byte. Unknown bits are a protocol error so that they can gain meaning."""

    NONE = 0
    COMPRESSED = 0x01  # body is zlib-compressed
    JSON = 0x02  # body is JSON rather than msgpack
    STREAM = 0x04  # on REQUEST: the caller expects a server stream
    NOT_PROCESSED = 0x08  # on ERROR: the handler never ran, so a retry is always safe
    TRACE = 0x10  # on REQUEST: the metadata bytes end with a binary trace context (TRACE_CONTEXT_SIZE)


KNOWN_FLAGS: Final = int(Flags.COMPRESSED | Flags.JSON | Flags.STREAM | Flags.NOT_PROCESSED | Flags.TRACE)
#: The W3C trace context in binary: trace id (16 bytes), parent span id (8), trace flags (1).
#: It trails the metadata map rather than sitting in it as a ``traceparent`` string: every call of
#: a traced service carries a unique one, and outside the map the map's bytes stay cacheable.
TRACE_CONTEXT_SIZE: Final = 25
FRAME_TYPE_LIMIT: Final = max(FrameType) + 1

_pack = HEADER.pack


def encode_frame(
    frame_type: int,
    stream_id: int,
    body: bytes = b"",
    metadata: bytes = b"",
    flags: int = 0,
) -> bytes:
    """The bytes of one frame. ``metadata`` is already msgpack-encoded (see :mod:`.metadata`)."""
    if len(metadata) > MAX_METADATA_LENGTH:
        raise ValueError(f"metadata is {len(metadata)} bytes; the wire format allows {MAX_METADATA_LENGTH}")
    header = _pack(MAGIC, VERSION, frame_type, flags, len(metadata), stream_id, len(body))
    if metadata:
        return b"".join((header, metadata, body))
    return header + body


class Frame(msgspec.Struct, gc=False):
    """One decoded frame. Metadata stays raw bytes until someone asks (most frames have none).

    A msgspec Struct rather than a plain class: built in C, it costs a fraction of a Python
    ``__init__`` on the path every frame takes.
    """

    type: int
    flags: int
    stream_id: int
    metadata: bytes
    body: bytes
    #: REQUEST: the binary trace context split off the metadata by the connection, else None.
    trace: bytes | None = None

    def encode(self) -> bytes:
        return encode_frame(self.type, self.stream_id, self.body, self.metadata, self.flags)

    def __repr__(self) -> str:
        try:
            name = FrameType(self.type).name
        except ValueError:
            name = str(self.type)
        return (
            f"Frame({name}, stream={self.stream_id}, flags={self.flags:#x}, "
            f"metadata={len(self.metadata)}B, body={len(self.body)}B)"
        )
