"""The sans-IO wire protocol: frames, the decoder, limits, metadata, stream states, keepalive.

Nothing here imports asyncio or touches a socket; see docs/protocol.md for the bytes.
"""

from meshkit.protocol.decoder import FrameDecoder
from meshkit.protocol.frames import HEADER_SIZE, MAGIC, VERSION, Flags, Frame, FrameType, encode_frame
from meshkit.protocol.limits import Limits
from meshkit.protocol.metadata import Metadata, decode_metadata, encode_metadata

__all__ = [
    "HEADER_SIZE",
    "MAGIC",
    "VERSION",
    "Flags",
    "Frame",
    "FrameDecoder",
    "FrameType",
    "Limits",
    "Metadata",
    "decode_metadata",
    "encode_frame",
    "encode_metadata",
]
