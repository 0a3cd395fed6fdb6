"""Result statistics: one run's throughput and percentiles, the median of repeated runs, and the
ratios against the raw baseline.

Pure functions over latencies and result rows, apart from the processes that produce them: the
load process summarizes its run, the harness combines the rows.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

from meshkit.benchmark.systems import BASELINE

#: The keys every result row has (the JSON output has a few more per row).
ROW_KEYS = (
    "system",
    "concurrency",
    "calls",
    "elapsed_s",
    "calls_per_s",
    "p50_us",
    "p99_us",
    "calls_per_s_vs_raw",
    "p50_vs_raw",
)


def summarize(latencies_ns: Sequence[int], elapsed_ns: int) -> dict[str, Any]:
    """Throughput and latency percentiles (nearest rank, in microseconds) of one run."""
    n = len(latencies_ns)
    ordered = sorted(latencies_ns)

    def pct(q: float) -> float | None:
        if not n:
            return None
        return round(ordered[min(n - 1, max(0, math.ceil(q * n) - 1))] / 1000, 1)

    return {
        "calls": n,
        "elapsed_s": round(elapsed_ns / 1e9, 4),
        "calls_per_s": round(n * 1e9 / elapsed_ns, 1) if elapsed_ns else 0.0,
        "mean_us": round(sum(ordered) / n / 1000, 1) if n else None,
        "p50_us": pct(0.50),
        "p90_us": pct(0.90),
        "p99_us": pct(0.99),
        "p999_us": pct(0.999),
        "max_us": round(ordered[-1] / 1000, 1) if n else None,
    }


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Of repeated runs of one system at one concurrency, the one with the median calls/s (the
    lower middle one for an even count), annotated with how many runs there were and their rates."""
    ordered = sorted(runs, key=lambda r: r["calls_per_s"])
    row = dict(ordered[(len(ordered) - 1) // 2])
    row["runs"] = len(runs)
    row["calls_per_s_runs"] = [r["calls_per_s"] for r in runs]
    for side in ("client", "server"):
        values = [r.get(f"{side}_cpu_us_per_call") for r in runs]
        if all(v is not None for v in values):
            row[f"{side}_cpu_us_per_call_runs"] = values
            row[f"{side}_cpu_us_per_call_median"] = statistics.median(values)  # type: ignore[type-var]
    return row


def add_ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """calls/s and p50 of each row relative to the raw baseline at the same concurrency."""
    base = {r["concurrency"]: r for r in rows if r["system"] == BASELINE}
    for row in rows:
        ref = base.get(row["concurrency"])
        cps_ratio = p50_ratio = None
        if ref is not None:
            if ref.get("calls_per_s"):
                cps_ratio = round(row["calls_per_s"] / ref["calls_per_s"], 3)
            if ref.get("p50_us") and row.get("p50_us") is not None:
                p50_ratio = round(row["p50_us"] / ref["p50_us"], 3)
        row["calls_per_s_vs_raw"] = cps_ratio
        row["p50_vs_raw"] = p50_ratio
    return rows
