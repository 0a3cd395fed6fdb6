"""FrameDecoder: round trips, re-chunking, and every header error refused after 16 bytes."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshkit.errors import (
    BadMagic,
    FrameTooLarge,
    MalformedFrame,
    ProtocolError,
    UnknownFrameType,
    UnsupportedVersion,
)
from meshkit.protocol.decoder import FrameDecoder, Rejected
from meshkit.protocol.frames import (
    HEADER_SIZE,
    KNOWN_FLAGS,
    MAGIC,
    MAX_METADATA_LENGTH,
    MAX_STREAM_ID,
    VERSION,
    Flags,
    Frame,
    FrameType,
    encode_frame,
)
from meshkit.protocol.limits import DEFAULT_MAX_FRAME_SIZE, DEFAULT_MAX_METADATA_SIZE, Limits
from meshkit.protocol.metadata import encode_metadata

# -- helpers ----------------------------------------------------------------------------------


def header(
    *,
    magic: bytes = MAGIC,
    version: int = VERSION,
    frame_type: int = FrameType.REQUEST,
    flags: int = 0,
    reserved: int = 0,
    md_len: int = 0,
    stream_id: int = 1,
    body_len: int = 0,
) -> bytes:
    """A 16-byte header built by hand (not by encode_frame), so any field can be made wrong."""
    return struct.pack(">2sBBBBHII", magic, version, frame_type, flags, reserved, md_len, stream_id, body_len)


def feed_in_chunks(decoder: FrameDecoder, data: bytes, cuts: list[int]) -> list[Frame]:
    frames: list[Frame] = []
    start = 0
    for cut in [*sorted(cuts), len(data)]:
        frames += decoder.feed(data[start:cut])
        start = cut
    # Whether a frame came straight from the chunk or from the decoder's buffer, it holds bytes:
    # immutable, and no view of a buffer the decoder goes on to change.
    assert all(type(f.body) is bytes and type(f.metadata) is bytes for f in frames)
    return frames


frame_types = st.sampled_from(list(FrameType))
frame_flags = st.integers(0, KNOWN_FLAGS)
stream_ids = st.one_of(st.sampled_from([0, 1, MAX_STREAM_ID]), st.integers(0, MAX_STREAM_ID))
metadata_bytes = st.one_of(
    st.binary(max_size=300),
    st.dictionaries(
        st.text(max_size=10),
        st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.text()),
        max_size=8,
    ).map(encode_metadata),
)
bodies = st.binary(max_size=3000)
frames_st = st.builds(Frame, frame_types, frame_flags, stream_ids, metadata_bytes, bodies)


# -- the header layout --------------------------------------------------------------------------


def test_header_layout_is_the_documented_16_bytes() -> None:
    data = encode_frame(FrameType.ERROR, 0x01020304, b"BODY", b"\x81\xa1k\x01", Flags.NOT_PROCESSED | Flags.JSON)
    assert HEADER_SIZE == 16
    assert data[:16] == bytes.fromhex("4d4b01030a0000040102030400000004")
    assert data[16:20] == b"\x81\xa1k\x01"
    assert data[20:] == b"BODY"


def test_frame_encode_matches_encode_frame() -> None:
    frame = Frame(FrameType.STREAM_DATA, Flags.COMPRESSED, 7, b"\x80", b"xyz")
    assert frame.encode() == encode_frame(FrameType.STREAM_DATA, 7, b"xyz", b"\x80", Flags.COMPRESSED)


def test_encode_frame_refuses_metadata_over_the_wire_maximum() -> None:
    with pytest.raises(ValueError):
        encode_frame(FrameType.REQUEST, 1, b"", b"x" * (MAX_METADATA_LENGTH + 1))


# -- round trips ----------------------------------------------------------------------------------


@pytest.mark.parametrize("frame_type", list(FrameType))
@pytest.mark.parametrize("flags", [0, *list(Flags)[1:], KNOWN_FLAGS])
@pytest.mark.parametrize("stream_id", [0, 1, 2**31, MAX_STREAM_ID])
def test_round_trip_table(frame_type: FrameType, flags: int, stream_id: int) -> None:
    frame = Frame(frame_type, int(flags), stream_id, encode_metadata({"service": "greeter"}), b"body")
    decoder = FrameDecoder()
    assert decoder.feed(frame.encode()) == [frame]
    assert decoder.buffered == 0


@pytest.mark.parametrize(
    ("metadata", "body"),
    [
        (b"", b""),
        (b"", b"x"),
        (b"\x80", b""),
        (b"m" * DEFAULT_MAX_METADATA_SIZE, b""),
        (b"", b"b" * 100_000),
    ],
    ids=["empty", "body-only", "metadata-only", "metadata-at-limit", "large-body"],
)
def test_round_trip_sizes(metadata: bytes, body: bytes) -> None:
    frame = Frame(FrameType.RESPONSE, 0, 3, metadata, body)
    decoder = FrameDecoder()
    [decoded] = decoder.feed(frame.encode())
    assert decoded == frame
    assert type(decoded.body) is bytes and type(decoded.metadata) is bytes
    assert decoder.buffered == 0


@given(frame=frames_st)
def test_round_trip_any_frame(frame: Frame) -> None:
    decoder = FrameDecoder()
    assert decoder.feed(frame.encode()) == [frame]
    assert decoder.buffered == 0


@pytest.mark.parametrize("which", ["body", "metadata"])
def test_exactly_at_the_limit_is_accepted_and_one_more_is_not(which: str) -> None:
    limits = Limits(max_frame_size=100, max_metadata_size=50)
    size = 100 if which == "body" else 50
    kwargs = {which: b"z" * size}
    ok = encode_frame(FrameType.REQUEST, 1, **kwargs)
    assert len(FrameDecoder(limits).feed(ok)) == 1
    kwargs = {which: b"z" * (size + 1)}
    too_big = encode_frame(FrameType.REQUEST, 1, **kwargs)
    if which == "body":
        with pytest.raises(FrameTooLarge):
            FrameDecoder(limits).feed(too_big)
        return
    decoder = FrameDecoder(limits)  # oversized metadata: the frame is skipped and reported
    assert decoder.feed(too_big) == []
    assert decoder.rejected == [Rejected(FrameType.REQUEST, 0, 1, 51, 0)]


def test_zero_metadata_limit_refuses_any_metadata_but_not_a_body() -> None:
    decoder = FrameDecoder(Limits(max_metadata_size=0))
    assert decoder.feed(encode_frame(FrameType.RESPONSE, 1, b"body")) == [Frame(FrameType.RESPONSE, 0, 1, b"", b"body")]
    assert decoder.feed(encode_frame(FrameType.REQUEST, 3, b"", b"\x80")) == []
    assert [r.stream_id for r in decoder.rejected] == [3]


# -- oversized metadata: skipped, reported, never held --------------------------------------------


@pytest.mark.parametrize("md_len", [DEFAULT_MAX_METADATA_SIZE + 1, 0xFFFF])
def test_a_frame_with_oversized_metadata_is_skipped_without_holding_it(md_len: int) -> None:
    decoder = FrameDecoder()
    raw = header(md_len=md_len, body_len=10)
    assert decoder.feed(raw[:15]) == []
    assert decoder.feed(raw[15:]) == []  # judged at its 16th byte
    assert decoder.rejected == [Rejected(FrameType.REQUEST, 0, 1, md_len, 10)]
    assert decoder.buffered == 0 and decoder.skipping == md_len + 10
    for _ in range(md_len // 1000):
        assert decoder.feed(b"m" * 1000) == []
        assert decoder.buffered == 0  # discarded as it arrives
    rest = b"m" * (md_len % 1000) + b"b" * 10
    # The bytes after it are a frame boundary again: the frames that follow decode.
    assert decoder.feed(rest + SAMPLE_STREAM) == SAMPLE_FRAMES
    assert decoder.skipping == 0 and decoder.buffered == 0


def test_a_skipped_frame_between_frames_in_one_chunk_leaves_the_others_intact() -> None:
    limits = Limits(max_metadata_size=10)
    big = encode_frame(FrameType.REQUEST, 5, b"body", b"\x80" * 11)
    decoder = FrameDecoder(limits)
    assert decoder.feed(SAMPLE_FRAMES[1].encode() + big + SAMPLE_FRAMES[1].encode()) == [SAMPLE_FRAMES[1]] * 2
    assert decoder.rejected == [Rejected(FrameType.REQUEST, 0, 5, 11, 4)]


def test_oversized_metadata_with_another_fault_is_that_fault() -> None:
    with pytest.raises(FrameTooLarge):
        FrameDecoder().feed(header(md_len=0xFFFF, body_len=2**31))
    with pytest.raises(BadMagic):
        FrameDecoder().feed(header(magic=b"XX", md_len=0xFFFF))


# -- re-chunking ----------------------------------------------------------------------------------

SAMPLE_FRAMES = [
    Frame(FrameType.REQUEST, Flags.STREAM, 1, encode_metadata({"service": "s", "method": "m", "credit": 8}), b"\x80"),
    Frame(FrameType.PING, 0, 0, b"", b"12345678"),
    Frame(FrameType.STREAM_DATA, 0, 1, b"", b"a" * 1000),
    Frame(FrameType.CANCEL, 0, 5, b"", b""),
    Frame(FrameType.CREDIT, 0, 1, b"", b"\x00\x00\x00\x10"),
    Frame(FrameType.STREAM_END, 0, 1, b"", b""),
    Frame(FrameType.GOAWAY, 0, 0, b"", b"\x81\xaelast_stream_id\x05"),
]
SAMPLE_STREAM = b"".join(f.encode() for f in SAMPLE_FRAMES)


@pytest.mark.parametrize(
    "cuts",
    [
        [],  # everything at once
        list(range(1, len(SAMPLE_STREAM))),  # one byte at a time
        list(range(HEADER_SIZE, len(SAMPLE_STREAM), HEADER_SIZE)),  # cuts on header-sized steps
        [15, 16, 17],  # around the first header's end
        [len(SAMPLE_FRAMES[0].encode())],  # exactly on a frame boundary
        [len(SAMPLE_STREAM) - 1],  # all but the last byte
    ],
    ids=["at-once", "byte-by-byte", "16-byte-steps", "around-header", "frame-boundary", "last-byte-late"],
)
def test_rechunking_table(cuts: list[int]) -> None:
    decoder = FrameDecoder()
    assert feed_in_chunks(decoder, SAMPLE_STREAM, cuts) == SAMPLE_FRAMES
    assert decoder.buffered == 0


def test_byte_by_byte_emits_each_frame_on_its_last_byte_and_buffers_the_rest() -> None:
    decoder = FrameDecoder()
    boundaries = set()
    end = 0
    for frame in SAMPLE_FRAMES:
        end += len(frame.encode())
        boundaries.add(end)
    emitted: list[Frame] = []
    for i in range(len(SAMPLE_STREAM)):
        out = decoder.feed(SAMPLE_STREAM[i : i + 1])
        assert bool(out) == (i + 1 in boundaries)
        emitted += out
        consumed = max((b for b in boundaries if b <= i + 1), default=0)
        assert decoder.buffered == i + 1 - consumed
    assert emitted == SAMPLE_FRAMES


def test_empty_feeds_change_nothing() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(b"") == []
    assert decoder.feed(SAMPLE_STREAM[:10]) == []
    assert decoder.feed(b"") == []
    assert decoder.buffered == 10
    assert decoder.feed(SAMPLE_STREAM[10:]) == SAMPLE_FRAMES


def test_accepts_bytearray_and_memoryview_chunks() -> None:
    decoder = FrameDecoder()
    half = len(SAMPLE_STREAM) // 2
    frames = decoder.feed(bytearray(SAMPLE_STREAM[:half])) + decoder.feed(memoryview(SAMPLE_STREAM)[half:])  # type: ignore[arg-type]
    assert frames == SAMPLE_FRAMES


@pytest.mark.parametrize("kind", ["bytearray", "memoryview"])
def test_frames_do_not_share_a_buffer_the_caller_reuses(kind: str) -> None:
    # A reader that recycles its receive buffer must not change frames already handed out.
    buffer = bytearray(SAMPLE_STREAM)
    chunk = buffer if kind == "bytearray" else memoryview(buffer)
    frames = FrameDecoder().feed(chunk)  # type: ignore[arg-type]
    buffer[:] = bytes(len(buffer))
    assert frames == SAMPLE_FRAMES
    for frame in frames:
        assert type(frame.body) is bytes and type(frame.metadata) is bytes


@settings(max_examples=200)
@given(frames=st.lists(frames_st, min_size=1, max_size=6), data=st.data())
def test_rechunking_any_split(frames: list[Frame], data: st.DataObject) -> None:
    stream = b"".join(f.encode() for f in frames)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=20), label="cuts")
    decoder = FrameDecoder()
    assert feed_in_chunks(decoder, stream, cuts) == frames
    assert decoder.buffered == 0


@settings(max_examples=30, deadline=None)
@given(frames=st.lists(frames_st, min_size=1, max_size=3))
def test_rechunking_one_byte_at_a_time_and_all_at_once(frames: list[Frame]) -> None:
    stream = b"".join(f.encode() for f in frames)
    assert FrameDecoder().feed(stream) == frames
    assert feed_in_chunks(FrameDecoder(), stream, list(range(1, len(stream)))) == frames


# -- errors: refused after the 16 header bytes -------------------------------------------------

ERROR_CASES: list[tuple[str, bytes, type[ProtocolError]]] = [
    ("magic-XX", header(magic=b"XX"), BadMagic),
    ("magic-lowercase", header(magic=b"mk"), BadMagic),
    ("magic-swapped", header(magic=b"KM"), BadMagic),
    ("magic-zero", header(magic=b"\0\0"), BadMagic),
    ("http-request", b"GET / HTTP/1.1\r\n", BadMagic),
    ("tls-client-hello", bytes.fromhex("160301020001000200000000000000ff"), BadMagic),
    ("version-0", header(version=0), UnsupportedVersion),
    ("version-2", header(version=2), UnsupportedVersion),
    ("version-255", header(version=255), UnsupportedVersion),
    *[(f"type-{t}", header(frame_type=t), UnknownFrameType) for t in [0, *range(11, 256)]],
    *[(f"flag-{bit:#04x}", header(flags=bit), MalformedFrame) for bit in (0x20, 0x40, 0x80)],
    ("flags-known-plus-unknown", header(flags=KNOWN_FLAGS | 0x80), MalformedFrame),
    ("flags-all", header(flags=0xFF), MalformedFrame),
    *[(f"reserved-{r}", header(reserved=r), MalformedFrame) for r in (1, 0x80, 0xFF)],
    ("body-limit-plus-1", header(body_len=DEFAULT_MAX_FRAME_SIZE + 1), FrameTooLarge),
    ("body-2^31", header(body_len=2**31), FrameTooLarge),
    ("body-2^32-1", header(body_len=2**32 - 1), FrameTooLarge),
]


@pytest.mark.parametrize(("raw", "exc"), [(raw, exc) for _, raw, exc in ERROR_CASES], ids=[c[0] for c in ERROR_CASES])
def test_each_error_is_raised_after_only_the_header(raw: bytes, exc: type[ProtocolError]) -> None:
    assert len(raw) == HEADER_SIZE
    if exc is BadMagic:
        return  # judged sooner: see test_bad_magic_is_refused_at_its_first_wrong_byte
    decoder = FrameDecoder()
    assert decoder.feed(raw[:15]) == []  # 15 bytes: nothing can be judged yet
    assert decoder.buffered == 15
    with pytest.raises(exc):
        decoder.feed(raw[15:])  # the 16th byte: judged at once, without waiting for a body
    assert decoder.buffered <= HEADER_SIZE


@pytest.mark.parametrize(
    "raw", [raw for _, raw, exc in ERROR_CASES if exc is BadMagic], ids=[c[0] for c in ERROR_CASES if c[2] is BadMagic]
)
def test_bad_magic_is_refused_at_its_first_wrong_byte(raw: bytes) -> None:
    """A peer speaking another protocol may send a short line and wait: the decoder refuses it
    at the first byte that cannot begin a frame, and keeps what it sent for the message."""
    wrong = 0 if raw[0] != MAGIC[0] else 1
    decoder = FrameDecoder()
    if wrong:
        assert decoder.feed(raw[:1]) == []
    with pytest.raises(BadMagic) as info:
        decoder.feed(raw[wrong : wrong + 1])
    assert info.value.preview == raw[: wrong + 1]
    with pytest.raises(BadMagic) as info:
        FrameDecoder().feed(raw)
    assert info.value.preview == raw


@pytest.mark.parametrize(
    ("raw", "exc"), [(raw, exc) for _, raw, exc in ERROR_CASES[::7]], ids=[c[0] for c in ERROR_CASES[::7]]
)
def test_each_error_in_one_chunk_and_after_valid_frames(raw: bytes, exc: type[ProtocolError]) -> None:
    decoder = FrameDecoder()
    with pytest.raises(exc):
        decoder.feed(raw)
    # After whole frames delivered in earlier reads, the bad header is still caught at its 16th byte.
    decoder = FrameDecoder()
    assert decoder.feed(SAMPLE_STREAM) == SAMPLE_FRAMES
    with pytest.raises(exc):
        decoder.feed(raw)


def test_error_classes_are_distinct_protocol_errors() -> None:
    classes = {exc for _, _, exc in ERROR_CASES}
    assert classes == {BadMagic, UnsupportedVersion, UnknownFrameType, MalformedFrame, FrameTooLarge}
    assert all(issubclass(c, ProtocolError) for c in classes)


def test_a_2gib_body_claim_is_refused_at_once_with_nothing_buffered() -> None:
    decoder = FrameDecoder()
    with pytest.raises(FrameTooLarge, match=str(2**31)):
        decoder.feed(header(body_len=2**31))
    assert decoder.buffered == 0


@pytest.mark.parametrize(
    ("limits", "raw", "exc"),
    [
        (Limits(max_frame_size=1), header(body_len=2), FrameTooLarge),
        (Limits(max_frame_size=10), header(body_len=11, md_len=0), FrameTooLarge),
    ],
)
def test_custom_limits_are_enforced_on_the_header(limits: Limits, raw: bytes, exc: type[ProtocolError]) -> None:
    decoder = FrameDecoder(limits)
    with pytest.raises(exc):
        decoder.feed(raw)


def test_body_within_limit_waits_for_more_bytes() -> None:
    decoder = FrameDecoder(Limits(max_frame_size=1000))
    assert decoder.feed(header(body_len=1000, md_len=3)) == []
    assert decoder.buffered == HEADER_SIZE
    assert decoder.feed(b"\x80" * 3 + b"b" * 999) == []
    [frame] = decoder.feed(b"b")
    assert (frame.metadata, frame.body) == (b"\x80" * 3, b"b" * 1000)


# -- poisoning ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "exc"), [(raw, exc) for _, raw, exc in ERROR_CASES[::5]], ids=[c[0] for c in ERROR_CASES[::5]]
)
def test_decoder_is_poisoned_after_an_error(raw: bytes, exc: type[ProtocolError]) -> None:
    decoder = FrameDecoder()
    with pytest.raises(exc) as first:
        decoder.feed(raw)
    # A perfectly valid frame afterwards is not decoded: framing is lost for good.
    with pytest.raises(exc) as second:
        decoder.feed(SAMPLE_FRAMES[1].encode())
    assert second.value is first.value
    with pytest.raises(exc):
        decoder.feed(b"")
    assert decoder.buffered == 0


# -- arbitrary input ---------------------------------------------------------------------------


def _decode_all(raw: bytes, cuts: list[int], limits: Limits) -> tuple[list[Frame], type[BaseException] | None]:
    decoder = FrameDecoder(limits)
    frames: list[Frame] = []
    start = 0
    try:
        for cut in [*sorted(cuts), len(raw)]:
            frames += decoder.feed(raw[start:cut])
            start = cut
    except ProtocolError as exc:
        return frames, type(exc)
    return frames, None


@settings(max_examples=300)
@given(
    prefix=st.lists(frames_st, max_size=3),
    junk=st.binary(max_size=64),
    data=st.data(),
)
def test_arbitrary_bytes_only_raise_protocol_errors_whatever_the_chunking(
    prefix: list[Frame], junk: bytes, data: st.DataObject
) -> None:
    limits = Limits(max_frame_size=2048, max_metadata_size=256)
    raw = b"".join(f.encode() for f in prefix) + junk
    cuts = data.draw(st.lists(st.integers(0, len(raw)), max_size=10), label="cuts")
    # Byte by byte is the reference: every whole frame is handed out before the next header is judged.
    ref_frames, ref_error = _decode_all(raw, list(range(1, len(raw))), limits)
    frames, error = _decode_all(raw, cuts, limits)
    assert error is ref_error
    assert frames == ref_frames[: len(frames)]
    if error is None:
        assert frames == ref_frames
