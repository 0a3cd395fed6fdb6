"""Fuzz the frame decoder and the body/metadata codecs with atheris (libFuzzer).

Run it for N seconds::

    python fuzz/fuzz_decoder.py -max_total_time=N

Any other libFuzzer flag works too (``-runs=1000``, ``-jobs=4``, ``-seed=1``...). With no corpus
directory on the command line the corpus is ``fuzz/corpus/inputs/`` and crash reproducers go to
``fuzz/corpus/crashes/`` (both under the gitignored ``fuzz/corpus/``). The seed inputs below are
(re)written into whichever corpus directory is used before fuzzing starts. Reproduce a crash with
``python fuzz/fuzz_decoder.py fuzz/corpus/crashes/crash-<sha1>``.

Regressions: the seed corpus includes :func:`regression_inputs`, one or more inputs for each bug this
target has found in the protocol code. All of them are fixed, so every run must start clean on them;
any crash, on a seed or on a new input, is a bug to fix in ``src/meshkit/protocol``.

(libFuzzer's ``-fork``/``-ignore_crashes`` mode does not work with atheris' Python targets.)

Input layout (so that seeds can be written by hand)::

    bytes 0-1   max_frame_size    = 1 + (u16be % 4096)
    byte  2     max_metadata_size = the byte (0..255)
    byte  3     k = byte % 9: how many cut points follow
    2k bytes    cut points, u16be each, taken modulo len(stream) + 1
    the rest    the byte stream fed to FrameDecoder, split at the cut points

What counts as a crash (anything that escapes :func:`TestOneInput`):

* any exception other than :class:`meshkit.errors.ProtocolError` from ``FrameDecoder.feed``,
  ``decode_metadata``, ``decode_goaway``, ``decode_credit`` or ``decompress``, and any exception at
  all from ``decode_error`` (it turns garbage into an INTERNAL ``RpcError``) or from ``encode_error``
  re-encoding what ``decode_error`` returned;
* a GOAWAY that decodes with a ``code`` that is not a status code or a ``last_stream_id`` outside
  0..2^32-1, or a ``decompress`` that succeeds although bytes follow the zlib stream;
* the chunked decode disagreeing with a byte-at-a-time decode (different frames, or a different
  error class), or a decoded frame that does not re-encode to a frame that decodes to itself.

Every whole frame's metadata and body go through the codecs, and so does the raw stream (so the
codecs also see input the frame limits would never let through).
"""

from __future__ import annotations

import hashlib
import sys
import zlib
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["meshkit"]):
    from meshkit.errors import ProtocolError, RpcError, StatusCode
    from meshkit.protocol.compression import compress, decompress
    from meshkit.protocol.decoder import FrameDecoder, Rejected
    from meshkit.protocol.frames import MAX_STREAM_ID, Flags, Frame, FrameType, encode_frame
    from meshkit.protocol.limits import Limits
    from meshkit.protocol.messages import (
        decode_credit,
        decode_error,
        decode_goaway,
        encode_credit,
        encode_error,
        encode_goaway,
    )
    from meshkit.protocol.metadata import MetadataTemplate, decode_metadata, encode_metadata

HERE = Path(__file__).resolve().parent
DEFAULT_CORPUS = HERE / "corpus" / "inputs"
DEFAULT_ARTIFACTS = HERE / "corpus" / "crashes"
MAX_DECOMPRESSED = 4096
MAX_CUTS = 8
STATUS_VALUES = frozenset(int(c) for c in StatusCode)


def parse_input(data: bytes) -> tuple[Limits, list[int], bytes]:
    """Split a fuzzer input into limits, cut points and the byte stream (see the module docstring)."""
    if len(data) < 4:
        return Limits(max_frame_size=64, max_metadata_size=16), [], data
    frame_limit = 1 + int.from_bytes(data[0:2], "big") % 4096
    metadata_limit = data[2]
    k = data[3] % (MAX_CUTS + 1)
    head = 4 + 2 * k
    raw_cuts = data[4:head]
    stream = data[head:]
    cuts = sorted(
        int.from_bytes(raw_cuts[i : i + 2], "big") % (len(stream) + 1) for i in range(0, len(raw_cuts) - 1, 2)
    )
    return Limits(max_frame_size=frame_limit, max_metadata_size=metadata_limit), cuts, stream


def build_input(
    stream: bytes, *, frame_limit: int = 4096, metadata_limit: int = 255, cuts: tuple[int, ...] = ()
) -> bytes:
    """The fuzzer input that :func:`parse_input` reads back as these values."""
    assert 1 <= frame_limit <= 4096 and 0 <= metadata_limit <= 255 and len(cuts) <= MAX_CUTS
    head = (frame_limit - 1).to_bytes(2, "big") + bytes((metadata_limit, len(cuts)))
    return head + b"".join(c.to_bytes(2, "big") for c in cuts) + stream


def decode(
    limits: Limits, stream: bytes, cuts: list[int]
) -> tuple[list[Frame], list[Rejected], type[ProtocolError] | None]:
    """Feed ``stream`` split at ``cuts``; the frames handed out, the frames skipped for oversized
    metadata, and the error class, if any."""
    decoder = FrameDecoder(limits)
    frames: list[Frame] = []
    start = 0
    try:
        for cut in [*cuts, len(stream)]:
            frames += decoder.feed(stream[start:cut])
            start = cut
    except ProtocolError as exc:
        # A poisoned decoder must stay poisoned.
        try:
            decoder.feed(b"")
        except ProtocolError as again:
            if type(again) is not type(exc):
                raise AssertionError(f"poisoned decoder raised {again!r} after {exc!r}") from None
        else:
            raise AssertionError(f"decoder accepted input after {exc!r}") from None
        return frames, decoder.rejected, type(exc)
    for rejected in decoder.rejected:
        if rejected.metadata_length <= limits.max_metadata_size or rejected.body_length > limits.max_frame_size:
            raise AssertionError(f"{rejected!r} skipped, but its metadata is within the limit or its body is not")
    consumed = sum(len(f.encode()) for f in frames) + sum(r.size for r in decoder.rejected) - decoder.skipping
    if decoder.buffered != len(stream) - consumed or (decoder.buffered and decoder.skipping):
        raise AssertionError(
            f"decoder buffers {decoder.buffered} bytes and skips {decoder.skipping}; the frames leave a different "
            "remainder"
        )
    return frames, decoder.rejected, None


def check_codecs(raw: bytes) -> None:
    """Run every body/metadata codec on ``raw``: only ProtocolError may come out (none from decode_error)."""
    try:
        decode_metadata(raw)
    except ProtocolError:
        pass
    err = decode_error(raw)
    if not isinstance(err, RpcError) or not isinstance(err.code, StatusCode):
        raise AssertionError(f"decode_error returned {err!r}, not an RpcError with a StatusCode")
    decode_error(raw, not_processed=True)
    encode_error(err.code, err.message, err.details)  # what a peer sent can be passed on
    try:
        goaway = decode_goaway(raw)
    except ProtocolError:
        pass
    else:
        if goaway.code not in STATUS_VALUES or not 0 <= goaway.last_stream_id <= MAX_STREAM_ID:
            raise AssertionError(f"decode_goaway accepted out-of-range fields: {goaway!r}")
    try:
        decode_credit(raw)
    except ProtocolError:
        pass
    try:
        out = decompress(raw, MAX_DECOMPRESSED)
    except ProtocolError:
        pass
    else:
        if len(out) > MAX_DECOMPRESSED:
            raise AssertionError(f"decompress returned {len(out)} bytes over its cap of {MAX_DECOMPRESSED}")
        inflater = zlib.decompressobj()
        inflater.decompress(raw)  # small: it inflated within the cap above
        if inflater.unused_data:
            raise AssertionError(f"decompress accepted {len(inflater.unused_data)} bytes after the zlib stream")


def TestOneInput(data: bytes) -> None:
    limits, cuts, stream = parse_input(data)
    reference, ref_rejected, ref_error = decode(limits, stream, list(range(1, len(stream))))  # byte at a time
    frames, rejected, error = decode(limits, stream, cuts)
    if error is not ref_error:
        raise AssertionError(f"chunking {cuts} raised {error}, byte-at-a-time raised {ref_error}")
    if frames != reference[: len(frames)] or (error is None and frames != reference):
        raise AssertionError(f"chunking {cuts} produced {frames}, byte-at-a-time {reference}")
    if rejected != ref_rejected[: len(rejected)] or (error is None and rejected != ref_rejected):
        raise AssertionError(f"chunking {cuts} skipped {rejected}, byte-at-a-time {ref_rejected}")
    for frame in reference:
        again = FrameDecoder(limits).feed(frame.encode())
        if again != [frame]:
            raise AssertionError(f"{frame!r} re-encoded decodes to {again!r}")
        check_codecs(frame.metadata)
        check_codecs(frame.body)
    check_codecs(stream)


# -- seeds --------------------------------------------------------------------------------------


def seed_inputs() -> dict[str, bytes]:
    """Valid conversations and the usual suspects, as fuzzer inputs; keyed by a stable name."""
    template = MetadataTemplate({"service": "greeter", "method": "hello"})
    request = encode_frame(FrameType.REQUEST, 1, b"\x81\xa4name\xa3ann", template.render(1000))
    response = encode_frame(FrameType.RESPONSE, 1, b"\xaahello, ann")
    stream_call = b"".join(
        [
            encode_frame(FrameType.REQUEST, 3, b"\x80", template.render(None, {"credit": 2}), Flags.STREAM),
            encode_frame(FrameType.STREAM_DATA, 3, b"\x01"),
            encode_frame(FrameType.CREDIT, 3, encode_credit(2)),
            encode_frame(FrameType.STREAM_DATA, 3, b"\x02"),
            encode_frame(FrameType.STREAM_END, 3),
        ]
    )
    control = b"".join(
        [
            encode_frame(FrameType.PING, 0, b"\x00\x01\x02\x03\x04\x05\x06\x07"),
            encode_frame(FrameType.PONG, 0, b"\x00\x01\x02\x03\x04\x05\x06\x07"),
            encode_frame(FrameType.GOAWAY, 0, encode_goaway(7, StatusCode.UNAVAILABLE, "draining")),
            encode_frame(FrameType.CANCEL, 9),
        ]
    )
    error = encode_frame(
        FrameType.ERROR, 5, encode_error(StatusCode.NOT_FOUND, "no such user", {"id": 7}), b"", Flags.NOT_PROCESSED
    )
    compressed = encode_frame(FrameType.RESPONSE, 11, compress(b"x" * 2000), b"", Flags.COMPRESSED)
    json_frame = encode_frame(FrameType.RESPONSE, 13, b'"hello"', encode_metadata({"caller": "web"}), Flags.JSON)
    whole = request + response + stream_call + control + error + compressed + json_frame
    return {
        "request-response": build_input(request + response),
        "request-response-split": build_input(request + response, cuts=(1, 15, 16, 17, len(request), len(request) + 3)),
        "stream": build_input(stream_call, cuts=(20, 40, 60)),
        "control": build_input(control),
        "error": build_input(error),
        "compressed": build_input(compressed),
        "json": build_input(json_frame),
        "everything": build_input(whole, cuts=tuple(range(7, 8 * 7 + 1, 7))),
        "small-limits": build_input(request + response, frame_limit=8, metadata_limit=4),
        "zero-metadata-limit": build_input(request, metadata_limit=0),
        "partial-frame": build_input(request[:-1]),
        "bad-magic": build_input(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
        "bad-version": build_input(b"MK\x02" + request[3:]),
        "unknown-type": build_input(request[:3] + b"\x0b" + request[4:]),
        "unknown-flag": build_input(request[:4] + b"\x80" + request[5:]),
        "reserved-byte": build_input(request[:5] + b"\x01" + request[6:]),
        "huge-body": build_input(request[:12] + b"\x80\x00\x00\x00"),
        "huge-metadata": build_input(request[:6] + b"\xff\xff" + request[8:]),
        "empty": build_input(b""),
    }


def regression_inputs() -> dict[str, bytes]:
    """Inputs that crashed the target once and were fixed: they must keep passing (all are seeds)."""
    deep = b"\x91" * 1500 + b"\x00"  # 1500 nested one-element arrays: past msgspec's recursion limit
    return {
        # msgspec raised UnicodeDecodeError (not DecodeError) for invalid UTF-8 in a str.
        "utf8-metadata-key": build_input(encode_frame(FrameType.REQUEST, 1, b"\x80", b"\x81\xa2\xff\xfe\x01")),
        "utf8-metadata-value": build_input(encode_frame(FrameType.REQUEST, 1, b"\x80", b"\x81\xa1k\xa2\xff\xfe")),
        "utf8-goaway-message": build_input(
            encode_frame(FrameType.GOAWAY, 0, b"\x82\xaelast_stream_id\x01\xa7message\xa1\xff")
        ),
        # RecursionError escaped decode_error (instead of an INTERNAL RpcError) / decode_goaway
        # (instead of MalformedFrame) on absurdly deep msgpack.
        "deep-error-details": build_input(encode_frame(FrameType.ERROR, 1, b"\x82\xa4code\x05\xa7details" + deep)),
        "deep-goaway-extra-key": build_input(
            encode_frame(FrameType.GOAWAY, 0, b"\x82\xaelast_stream_id\x01\xa5extra" + deep)
        ),
    }


def write_seeds(directory: Path) -> int:
    """Write the seeds and the regression inputs into ``directory``; returns how many."""
    directory.mkdir(parents=True, exist_ok=True)
    inputs = seed_inputs() | {f"regression-{k}": v for k, v in regression_inputs().items()}
    for name, data in inputs.items():
        (directory / f"seed-{name}-{hashlib.sha1(data).hexdigest()[:8]}").write_bytes(data)
    return len(inputs)


def main(argv: list[str]) -> None:
    args = list(argv)
    corpus_dirs = [a for a in args[1:] if not a.startswith("-")]
    if not corpus_dirs:
        args.append(str(DEFAULT_CORPUS))
        corpus_dirs = [str(DEFAULT_CORPUS)]
        if not any(a.startswith("-artifact_prefix=") for a in args):
            DEFAULT_ARTIFACTS.mkdir(parents=True, exist_ok=True)
            args.append(f"-artifact_prefix={DEFAULT_ARTIFACTS}/")
    if Path(corpus_dirs[0]).is_dir() or not Path(corpus_dirs[0]).exists():
        write_seeds(Path(corpus_dirs[0]))  # a file argument is a crash to reproduce: leave it alone
    atheris.Setup(args, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
