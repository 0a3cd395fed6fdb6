"""Smoke test of the RPC benchmark harness: every default system (gRPC included: the test extra installs
it) serves and answers in child processes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from meshkit.benchmark import harness


@pytest.mark.slow
def test_each_system_completes_calls(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench.json"
    code = harness.main(["--duration", "0.5", "--warmup", "0.2", "--concurrency", "4", "--json", str(out)])
    assert code == 0

    data = json.loads(out.read_text())
    # grpc and msgpack are in the test extra: a system the harness had to leave out is a failure here.
    assert data["skipped"] == {}, f"the benchmark left systems out: {data['skipped']}"
    ran = list(harness.DEFAULT_SYSTEMS)
    assert "grpc" in ran
    assert [row["system"] for row in data["results"]] == ran
    assert data["failures"] == []
    for row in data["results"]:
        assert set(harness.ROW_KEYS) <= row.keys(), row
        assert row["concurrency"] == 4
        assert row["calls"] > 0, row
        assert row["calls_per_s"] > 0, row
        assert 0 < row["p50_us"] <= row["p99_us"], row
        assert row["calls_per_s_vs_raw"] is not None and row["p50_vs_raw"] is not None, row
    assert {"cpu_model", "cores", "python", "uvloop", "pinned"} <= data["machine"].keys()

    printed = capsys.readouterr().out
    assert "calls/s" in printed
    for system in ran:
        assert system in printed


@pytest.mark.slow
def test_the_observed_systems_complete_calls(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    systems = ",".join((*harness.OBSERVED, "raw"))
    code = harness.main(
        ["--duration", "0.3", "--warmup", "0.1", "--concurrency", "4", "--systems", systems, "--json", str(out)]
    )
    assert code == 0
    data = json.loads(out.read_text())
    assert data["failures"] == []
    assert {row["system"] for row in data["results"]} == {*harness.OBSERVED, "raw"}
    assert all(row["calls"] > 0 for row in data["results"])
