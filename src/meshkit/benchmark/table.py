"""The results table: plain text, Markdown, or rich on a terminal (:func:`report` picks)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from meshkit.benchmark.systems import BASELINE

COLUMNS = ("system", "concurrency", "calls/s", "p50 µs", "p99 µs", "calls/s vs raw", "p50 vs raw")


def num(value: float | None, fmt: str) -> str:
    return "—" if value is None else format(value, fmt)


def _ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}x"


def table_cells(rows: list[dict[str, Any]]) -> list[list[str]]:
    return [
        [
            r["system"],
            str(r["concurrency"]),
            num(r["calls_per_s"], ",.0f"),
            num(r["p50_us"], ",.1f"),
            num(r["p99_us"], ",.1f"),
            _ratio(r["calls_per_s_vs_raw"]),
            _ratio(r["p50_vs_raw"]),
        ]
        for r in rows
    ]


def format_plain(rows: list[dict[str, Any]]) -> str:
    cells = table_cells(rows)
    widths = [max(len(c[i]) for c in [list(COLUMNS), *cells]) for i in range(len(COLUMNS))]
    left = {0}

    def line(cols: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(cols, widths, strict=True))
        )

    out = [line(COLUMNS), "  ".join("-" * w for w in widths)]
    out.extend(line(c) for c in cells)
    return "\n".join(out)


def format_markdown(rows: list[dict[str, Any]]) -> str:
    out = ["| " + " | ".join(COLUMNS) + " |", "|:---|" + "---:|" * (len(COLUMNS) - 1)]
    out.extend("| " + " | ".join(c) + " |" for c in table_cells(rows))
    return "\n".join(out)


def print_rich(rows: list[dict[str, Any]], header: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table()
    for i, name in enumerate(COLUMNS):
        table.add_column(name, justify="left" if i == 0 else "right")
    previous = None
    for row, cells in zip(rows, table_cells(rows), strict=True):
        if previous is not None and row["concurrency"] != previous:
            table.add_section()
        previous = row["concurrency"]
        table.add_row(*cells, style="dim" if row["system"] == BASELINE else None)
    console = Console()
    console.print(header, highlight=False, soft_wrap=True)
    console.print(table)


def report(rows: list[dict[str, Any]], header: str, markdown: bool) -> None:
    if markdown:
        print(header)
        print()
        print(format_markdown(rows))
    elif sys.stdout.isatty():
        print_rich(rows, header)
    else:
        print(header)
        print(format_plain(rows))
