"""Optional zlib compression of frame bodies, with a hard cap on what a body may inflate to."""

from __future__ import annotations

import zlib

from meshkit.errors import FrameTooLarge, MalformedFrame

#: Bodies smaller than this are sent as they are: compressing them costs more than it saves.
MIN_COMPRESS_SIZE = 1024


def compress(body: bytes, level: int = 6) -> bytes:
    return zlib.compress(body, level)


def decompress(body: bytes, max_size: int) -> bytes:
    """Inflate ``body`` but never past ``max_size`` bytes: a zip bomb stops at the limit."""
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(body, max_size)
    except zlib.error as exc:
        raise MalformedFrame(f"compressed body is corrupt: {exc}") from None
    if inflater.unconsumed_tail:
        raise FrameTooLarge(f"compressed body inflates past the limit of {max_size} bytes")
    if not inflater.eof:
        raise MalformedFrame("compressed body is truncated")
    if inflater.unused_data:
        raise MalformedFrame(f"{len(inflater.unused_data)} bytes follow the end of the compressed body")
    return out
