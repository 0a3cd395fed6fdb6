"""Limits a connection enforces on what its peer sends; checked before anything is allocated."""

from __future__ import annotations

from dataclasses import dataclass

from meshkit.protocol.frames import MAX_METADATA_LENGTH

DEFAULT_MAX_FRAME_SIZE = 4 * 1024 * 1024
DEFAULT_MAX_METADATA_SIZE = 16 * 1024
DEFAULT_MAX_CONCURRENT_STREAMS = 1024
DEFAULT_MAX_DECOMPRESSED_SIZE = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Limits:
    """What one side accepts. Defaults follow gRPC's 4 MiB message limit.

    ``max_frame_size`` bounds a frame's body, ``max_metadata_size`` its metadata map,
    ``max_concurrent_streams`` the calls open at once on one connection, and
    ``max_decompressed_size`` what a compressed body may inflate to (a zip bomb stops there).
    """

    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE
    max_metadata_size: int = DEFAULT_MAX_METADATA_SIZE
    max_concurrent_streams: int = DEFAULT_MAX_CONCURRENT_STREAMS
    max_decompressed_size: int = DEFAULT_MAX_DECOMPRESSED_SIZE

    def __post_init__(self) -> None:
        if not 0 < self.max_frame_size <= 0xFFFFFFFF:
            raise ValueError(f"max_frame_size must be in 1..{0xFFFFFFFF}, got {self.max_frame_size}")
        if not 0 <= self.max_metadata_size <= MAX_METADATA_LENGTH:
            raise ValueError(f"max_metadata_size must be in 0..{MAX_METADATA_LENGTH}, got {self.max_metadata_size}")
        if self.max_concurrent_streams < 1:
            raise ValueError(f"max_concurrent_streams must be at least 1, got {self.max_concurrent_streams}")
        if self.max_decompressed_size < 1:
            raise ValueError(f"max_decompressed_size must be at least 1, got {self.max_decompressed_size}")
