"""The atheris target for the frame decoder (fuzz/fuzz_decoder.py), run for a fixed time:
$MESHKIT_FUZZ_SECONDS (10 in CI; longer on demand: MESHKIT_FUZZ_SECONDS=600 bash scripts/reliability.sh)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.faults.conftest import ROOT, Reliability

TARGET = ROOT / "fuzz" / "fuzz_decoder.py"


def test_the_frame_decoder_survives_fuzzing(tmp_path: Path, reliability: Reliability) -> None:
    seconds = int(os.environ.get("MESHKIT_FUZZ_SECONDS", "10"))
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    proc = subprocess.run(
        [sys.executable, str(TARGET), f"-max_total_time={seconds}", f"-artifact_prefix={tmp_path}/", str(corpus)],
        capture_output=True,
        text=True,
        timeout=seconds + 120,
        cwd=tmp_path,
    )
    output = proc.stdout + proc.stderr
    done = re.search(r"Done (\d+) runs in (\d+) second", proc.stderr)
    runs = int(done.group(1)) if done else 0
    crashes = list(tmp_path.glob("crash-*")) + list(tmp_path.glob("oom-*")) + list(tmp_path.glob("timeout-*"))
    reliability.record(
        "fuzzing the frame decoder (atheris)",
        f"{seconds} s of coverage-guided inputs: frames, limits and cut points (fuzz/fuzz_decoder.py)",
        "no crash, no hang, no unbounded allocation; every error a typed ProtocolError",
        f"{runs:,} inputs, {len(crashes)} crashes",
    )
    assert proc.returncode == 0, output[-5000:]
    assert done is not None and runs > 0
    assert crashes == []
