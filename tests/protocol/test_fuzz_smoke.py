"""The atheris target in fuzz/fuzz_decoder.py: its seeds, its regression inputs, and a 5-second run."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import zlib
from pathlib import Path
from types import ModuleType

import msgspec
import pytest

from meshkit.errors import MalformedFrame
from meshkit.protocol.compression import compress
from meshkit.protocol.frames import FrameType, encode_frame
from meshkit.protocol.limits import Limits
from meshkit.protocol.messages import GoAwayBody

FUZZ_TARGET = Path(__file__).resolve().parents[2] / "fuzz" / "fuzz_decoder.py"


@pytest.fixture(scope="module")
def target() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fuzz_decoder", FUZZ_TARGET)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(FUZZ_TARGET), *args], capture_output=True, text=True, timeout=90, cwd=tmp_path
    )


def test_input_layout_round_trips(target: ModuleType) -> None:
    data = target.build_input(b"stream-bytes", frame_limit=100, metadata_limit=7, cuts=(3, 1, 20))
    limits, cuts, stream = target.parse_input(data)
    assert limits == Limits(max_frame_size=100, max_metadata_size=7)
    assert stream == b"stream-bytes"
    assert cuts == [1, 3, 20 % (len(stream) + 1)]


@pytest.mark.parametrize("data", [b"", b"\x00", b"\x00\x00\x00", b"\xff\xff\xff\xff", b"\x00\x00\x00\x08\x01"])
def test_short_or_odd_inputs_are_handled(target: ModuleType, data: bytes) -> None:
    target.TestOneInput(data)


def test_every_seed_passes_the_target(target: ModuleType) -> None:
    seeds = target.seed_inputs()
    assert len(seeds) >= 15
    for name, data in seeds.items():
        try:
            target.TestOneInput(data)
        except Exception as exc:
            pytest.fail(f"seed {name} crashed the target: {exc!r}")


def test_the_oracle_catches_a_broken_decoder(target: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    # A decoder that loses the last byte of every body must be reported as a crash, not pass.
    real_decode = target.decode

    def lossy(limits: Limits, stream: bytes, cuts: list[int]) -> tuple[list[object], list[object], object]:
        frames, rejected, error = real_decode(limits, stream, cuts)
        if cuts and cuts != list(range(1, len(stream))):
            for frame in frames:
                frame.body = frame.body[:-1]
        return frames, rejected, error

    monkeypatch.setattr(target, "decode", lossy)
    with pytest.raises(AssertionError):
        target.TestOneInput(target.seed_inputs()["request-response-split"])


def _lenient_goaway(body: bytes) -> GoAwayBody:
    try:
        return msgspec.msgpack.decode(body, type=GoAwayBody)  # no range checks, as before the fix
    except msgspec.DecodeError as exc:
        raise MalformedFrame(str(exc)) from None


def _lenient_decompress(body: bytes, max_size: int) -> bytes:
    inflater = zlib.decompressobj()
    return inflater.decompress(body, max_size)  # ignores bytes after the stream, as before the fix


@pytest.mark.parametrize(
    ("name", "replacement", "stream"),
    [
        (
            "decode_goaway",
            _lenient_goaway,
            encode_frame(FrameType.GOAWAY, 0, msgspec.msgpack.encode({"last_stream_id": 1, "code": 99})),
        ),
        (
            "decode_goaway",
            _lenient_goaway,
            encode_frame(FrameType.GOAWAY, 0, msgspec.msgpack.encode({"last_stream_id": -1})),
        ),
        ("decompress", _lenient_decompress, compress(b"hello") + b"trailing"),
    ],
    ids=["goaway-code-99", "goaway-negative-sid", "decompress-trailing-bytes"],
)
def test_the_oracle_catches_the_fixed_codec_bugs(
    target: ModuleType, monkeypatch: pytest.MonkeyPatch, name: str, replacement: object, stream: bytes
) -> None:
    data = target.build_input(stream)
    target.TestOneInput(data)  # the fixed codecs pass
    monkeypatch.setattr(target, name, replacement)
    with pytest.raises(AssertionError):
        target.TestOneInput(data)


def test_fixed_bug_inputs_pass(target: ModuleType) -> None:
    inputs = target.regression_inputs()
    assert inputs
    for name, data in inputs.items():
        try:
            target.TestOneInput(data)
        except Exception as exc:
            pytest.fail(f"regression input {name} crashes again: {exc!r}")


@pytest.mark.parametrize("name", ["deep-error-details", "deep-goaway-extra-key"])
def test_deep_msgpack_inputs_no_longer_crash(target: ModuleType, name: str) -> None:
    # Once open bugs (RecursionError out of decode_error / decode_goaway), now regression seeds.
    data = target.regression_inputs()[name]
    _, _, stream = target.parse_input(data)
    assert len(stream) > 1500  # still the deep input, not a shrunken one
    target.TestOneInput(data)


def test_every_regression_input_is_a_seed(target: ModuleType, tmp_path: Path) -> None:
    count = target.write_seeds(tmp_path)
    written = {path.read_bytes() for path in tmp_path.iterdir()}
    assert count == len(target.seed_inputs()) + len(target.regression_inputs())
    assert set(target.regression_inputs().values()) <= written
    assert not hasattr(target, "known_bug_inputs")


@pytest.mark.slow
def test_seed_files_run_clean_from_the_command_line(target: ModuleType, tmp_path: Path) -> None:
    # Files as arguments: libFuzzer runs each once, without fuzzing, and exits 0 if none crashed.
    files = []
    for name, data in (target.seed_inputs() | target.regression_inputs()).items():
        path = tmp_path / name
        path.write_bytes(data)
        files.append(str(path))
    proc = _run(files, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"Running: {files[-1]}" in proc.stderr


@pytest.mark.slow
def test_fuzz_for_5_seconds(tmp_path: Path) -> None:
    # Every known bug is fixed: the seeds (regression inputs included) and 5 s of fuzzing run clean.
    corpus = tmp_path / "corpus"
    proc = _run(["-max_total_time=5", f"-artifact_prefix={tmp_path}/", str(corpus)], tmp_path)
    assert any(corpus.iterdir()), "the target did not write its seed corpus"
    output = proc.stdout + proc.stderr  # atheris prints the Python traceback on stdout
    assert proc.returncode == 0, f"fuzzing found a crash (exit {proc.returncode}):\n{output[-5000:]}"
    assert "Done" in proc.stderr
    assert not list(tmp_path.glob("crash-*"))
