"""zlib bodies: round trips, the inflate cap (zip bombs), truncated and corrupt input."""

from __future__ import annotations

import os
import time
import tracemalloc
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshkit.errors import FrameTooLarge, MalformedFrame
from meshkit.protocol.compression import MIN_COMPRESS_SIZE, compress, decompress

MB = 1024 * 1024
TEXT = b"the quick brown fox jumps over the lazy dog. " * 500


@pytest.mark.parametrize("level", [0, 1, 6, 9])
@pytest.mark.parametrize(
    "data",
    [b"", b"x", TEXT, os.urandom(10_000), bytes(MIN_COMPRESS_SIZE)],
    ids=["empty", "one", "text", "random", "zeros"],
)
def test_round_trip(data: bytes, level: int) -> None:
    assert decompress(compress(data, level), max_size=len(data) + 1) == data


def test_compression_shrinks_repetitive_bodies() -> None:
    assert len(compress(TEXT)) < len(TEXT) // 10


@pytest.mark.parametrize("size", [1, 100, MIN_COMPRESS_SIZE, 65_536, MB])
@pytest.mark.parametrize("kind", ["zeros", "random"])
def test_exactly_max_size_is_accepted_one_more_is_not(size: int, kind: str) -> None:
    data = bytes(size) if kind == "zeros" else os.urandom(size)
    assert decompress(compress(data), max_size=size) == data
    bigger = data + b"\x01"
    with pytest.raises(FrameTooLarge):
        decompress(compress(bigger), max_size=size)


@settings(max_examples=200)
@given(data=st.binary(max_size=5000), max_size=st.integers(1, 6000))
def test_inflates_iff_within_the_cap(data: bytes, max_size: int) -> None:
    body = compress(data)
    if len(data) <= max_size:
        assert decompress(body, max_size) == data
    else:
        with pytest.raises(FrameTooLarge):
            decompress(body, max_size)


def _zip_bomb(total: int) -> bytes:
    """``total`` zero bytes, deflated, without ever holding them all in memory."""
    deflater = zlib.compressobj(9)
    chunk = bytes(MB)
    parts = [deflater.compress(chunk) for _ in range(total // MB)]
    parts.append(deflater.flush())
    return b"".join(parts)


@pytest.fixture(scope="module")
def bomb() -> bytes:
    data = _zip_bomb(100 * MB)
    assert len(data) < 200_000  # ~100 KB that inflates to 100 MB
    return data


def test_zip_bomb_stops_at_the_limit(bomb: bytes) -> None:
    tracemalloc.start()
    started = time.thread_time()  # this thread's CPU time: a busy machine does not inflate it
    try:
        with pytest.raises(FrameTooLarge, match=str(MB)):
            decompress(bomb, max_size=MB)
        elapsed = time.thread_time() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * MB, f"inflating allocated {peak} bytes; the cap is 1 MB"
    assert elapsed < 2.0, f"{elapsed:.2f} s of CPU"


def test_zip_bomb_under_a_big_enough_limit_inflates(bomb: bytes) -> None:
    assert len(decompress(bomb, max_size=100 * MB)) == 100 * MB


@pytest.mark.parametrize("cut", [1, 2, 4, 10, 100])
def test_truncated_body_raises_malformed_frame(cut: int) -> None:
    body = compress(os.urandom(500))
    with pytest.raises(MalformedFrame):
        decompress(body[:-cut], max_size=MB)


CORRUPT = {
    "empty": b"",
    "not-zlib": b"hello, world",
    "bad-header": b"\x78\x00" + compress(TEXT)[2:],
    "bad-checksum": compress(TEXT)[:-1] + bytes([compress(TEXT)[-1] ^ 0xFF]),
    "random": bytes(range(256)),
    "raw-deflate-no-header": zlib.compress(TEXT)[2:-4],
    "gzip": b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff" + zlib.compress(TEXT)[2:-4],
}


@pytest.mark.parametrize("body", list(CORRUPT.values()), ids=list(CORRUPT))
def test_corrupt_body_raises_malformed_frame(body: bytes) -> None:
    with pytest.raises(MalformedFrame):
        decompress(body, max_size=MB)


def test_corruption_in_the_middle_is_detected() -> None:
    body = bytearray(compress(os.urandom(2000)))
    body[len(body) // 2] ^= 0xFF
    with pytest.raises(MalformedFrame):
        decompress(bytes(body), max_size=MB)


@settings(max_examples=500)
@given(body=st.binary(max_size=300), max_size=st.integers(1, 10_000))
def test_arbitrary_bytes_inflate_or_raise_a_protocol_error(body: bytes, max_size: int) -> None:
    try:
        out = decompress(body, max_size)
    except (MalformedFrame, FrameTooLarge):
        return
    assert len(out) <= max_size


@pytest.mark.parametrize("data", [b"", b"hello", TEXT], ids=["empty", "hello", "text"])
@pytest.mark.parametrize(
    "tail", [b"\x00", b"garbage", compress(b"second stream")], ids=["one-byte", "garbage", "second-stream"]
)
def test_bytes_after_the_zlib_stream_raise_malformed_frame(data: bytes, tail: bytes) -> None:
    with pytest.raises(MalformedFrame, match=f"{len(tail)} bytes follow the end of the compressed body"):
        decompress(compress(data) + tail, max_size=MB)
