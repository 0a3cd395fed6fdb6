"""The demo, run as a user runs it (non-interactive), and its statistics."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from meshkit.demo.driver import outcome
from meshkit.demo.stats import RollingStats
from meshkit.testing import spawn

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_demo_runs_spreads_calls_survives_a_kill_and_stops_its_processes() -> None:
    """... and the restock job moves from the killed leader to the other inventory within its TTL."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "meshkit",
            "demo",
            "--duration",
            "7",
            "--rate",
            "300",
            "--kill-after",
            "3",
            "--gateway-port",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "registry on 127.0.0.1:" in out and "order on 127.0.0.1:" in out
    pids = [int(m) for m in re.findall(r"inventory-\d on \S+ \(pid\s+(\d+)\)", out)]
    assert len(pids) == 2
    tick = r"t=\s*([\d.]+)s calls/s=.*?ok=(\d+) .*?errors=(\{.*?\}) served_by:((?: inventory-\d+=\d+)*)"
    ticks = re.findall(tick, out)
    served_before = {
        int(p) for t, _, _, served in ticks if float(t) <= 3.0 for p in re.findall(r"inventory-(\d+)=", served)
    }
    served_after = {
        int(p) for t, _, _, served in ticks if float(t) >= 5.0 for p in re.findall(r"inventory-(\d+)=", served)
    }
    assert served_before == set(pids)  # calls spread over both instances
    assert served_after == {pids[1]}  # the killed one gets nothing any more
    leaders = re.findall(r"t=\s*([\d.]+)s calls/s=.*? restock_leader=(\S+)", out)
    assert {leader for t, leader in leaders if 1.0 <= float(t) <= 3.0} == {f"inventory-{pids[0]}"}, leaders
    # Killed at 3 s, its lease (restock.TTL = 2 s) ends by 5 s: the survivor leads from then on.
    assert {leader for t, leader in leaders if float(t) >= 5.5} == {f"inventory-{pids[1]}"}, leaders
    ok_at_kill = max(int(ok) for t, ok, _, _ in ticks if float(t) <= 3.0)
    assert int(ticks[-1][1]) > ok_at_kill  # orders kept being placed after the kill
    # Every child it started is gone.
    for pid in [int(p) for p in re.findall(r"\(pid\s+(\d+)\)", out)]:
        assert not Path(f"/proc/{pid}").exists() or _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except FileNotFoundError:
        return True


@pytest.mark.slow
def test_demo_changes_the_inventory_limit_live_from_the_cli() -> None:
    """``--live-limit 20``: the demo runs ``meshkit config put``; both inventories then serve
    20 calls/s each, with no restart (same pids), and the rest is refused."""
    argv = [sys.executable, "-m", "meshkit", "demo", "--duration", "7", "--gateway-port", "0"]
    argv += ["--live-limit", "20", "--live-limit-after", "2"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=90, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert re.search(r"meshkit config put policy/inventory .* -> revision \d+", out), out
    ticks = re.findall(r"t=\s*([\d.]+)s calls/s=.*?served_by:((?: inventory-\d+=\d+)*)", out)
    before = [int(n) for t, served in ticks if 1.0 <= float(t) <= 2.0 for n in re.findall(r"=(\d+)", served)]
    after = [int(n) for t, served in ticks if float(t) >= 4.5 for n in re.findall(r"=(\d+)", served)]
    assert before and min(before) > 40, ticks  # 200 calls/s over two instances: unlimited
    assert after and max(after) <= 22, ticks  # the live limit, on both
    assert "RESOURCE_EXHAUSTED" in out


def test_rolling_stats() -> None:
    s = RollingStats(window=5)
    for i in range(100):
        s.record(10.0 + i / 100, latency=i / 1000)
    s.record(10.5, latency=0.5, error="UNAVAILABLE")
    assert s.rate(11.2) == 101
    assert s.total_ok == 100 and s.total_errors["UNAVAILABLE"] == 1
    assert s.percentile(11.2, 0.5) == pytest.approx(0.050, abs=0.002)
    assert s.percentile(11.2, 0.99) == pytest.approx(0.099, abs=0.002)
    assert s.error_rate(11.2) == pytest.approx(1 / 101)
    assert s.rate(20.0) == 0 and s.percentile(20.0, 0.5) is None


def test_an_expected_refusal_counts_as_a_call_but_never_as_an_error() -> None:
    s = RollingStats(window=5)
    for i in range(8):
        s.record(10.0 + i / 10, latency=0.001)
    s.record(10.8, latency=0.001, expected="out of stock")
    s.record(10.9, latency=0.001, error="INTERNAL")
    assert s.total_ok == 8 and s.total_expected == {"out of stock": 1} and s.total_errors == {"INTERNAL": 1}
    assert s.rate(11.5) == 10
    assert s.error_rate(11.5) == pytest.approx(1 / 10)
    with pytest.raises(ValueError, match="not both"):
        s.record(11.0, latency=0.001, error="INTERNAL", expected="out of stock")


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (201, b'{"order_id": 7}', (None, None)),
        (
            400,
            b'{"code": "FAILED_PRECONDITION", "message": "apple is out of stock", "request_id": "r"}',
            (None, "out of stock"),
        ),
        (
            400,
            b'{"code": "FAILED_PRECONDITION", "message": "something else", "request_id": "r"}',
            ("FAILED_PRECONDITION", None),
        ),
        (500, b'{"code": "INTERNAL", "message": "inventory-9 is failing", "request_id": "r"}', ("INTERNAL", None)),
        (502, b"<html>bad gateway</html>", ("HTTP 502", None)),
        (400, b"[1]", ("HTTP 400", None)),
    ],
)
def test_the_driver_tells_out_of_stock_from_errors(
    status: int, body: bytes, expected: tuple[str | None, str | None]
) -> None:
    assert outcome(status, body) == expected


@pytest.fixture(scope="module")
def piped_run() -> str:
    """One short demo run with its output piped (no terminal, no $COLUMNS) and so little stock
    that orders run it out every second."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env["MESHKIT_DEMO_STOCK"] = "20"
    proc = subprocess.run(
        [sys.executable, "-m", "meshkit", "demo", "--duration", "2", "--gateway-port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def _final_panel(out: str) -> list[str]:
    lines = out.splitlines()
    top = max(i for i, line in enumerate(lines) if line.startswith("╭"))
    return lines[top:]


@pytest.mark.slow
def test_out_of_stock_answers_are_their_own_outcome_not_errors(piped_run: str) -> None:
    ticks = re.findall(r"t=\s*[\d.]+s calls/s=.*? out_of_stock=(\d+) errors=(\{.*?\}) served_by:", piped_run)
    assert ticks, piped_run
    assert int(ticks[-1][0]) > 0 and all(errors == "{}" for _, errors in ticks), ticks
    panel = _final_panel(piped_run)
    header = next(i for i, line in enumerate(panel) if "out of stock" in line)
    columns = [c.strip() for c in re.split(r"[┃│]", panel[header])[2:-2]]
    values = [c.strip() for c in re.split(r"│", panel[header + 2])[2:-2]]
    row = dict(zip(columns, values, strict=True))
    assert int(row["out of stock"].replace(",", "")) >= int(ticks[-1][0]) > 0, row
    assert row["errors"] == "0" and row["error %"] == "0.00", row


@pytest.mark.slow
def test_piped_output_shows_the_final_panel_uncut(piped_run: str) -> None:
    banner = piped_run.splitlines()[0]
    addresses = re.findall(r" on (?:http://)?(127\.0\.0\.1:\d+)", banner)
    assert len(addresses) == 5, banner  # gateway, registry, two inventories, order
    panel = "\n".join(_final_panel(piped_run))
    assert "…" not in panel, panel
    for address in addresses:
        assert address in panel, (address, panel)
    assert "calls/s served" in panel and "breaker (in order)" in panel, panel


def test_cli_usage_errors() -> None:
    from meshkit.cli import main

    assert main(["call", "127.0.0.1:1", "nodot", "{}"]) == 2
    assert main(["call", "127.0.0.1:1", "a.b", "not json"]) == 2
    assert main(["call", "127.0.0.1:1", "a.b", "[1]"]) == 2
    assert main(["call", "127.0.0.1:1", "a.b", "{}", "-m", "deadline=1"]) == 2
    assert main(["call", "not-a-target", "a.b", "{}"]) == 2
    with pytest.raises(SystemExit):
        main(["run", "no_such_module_xyz:Thing"])


@pytest.mark.slow
def test_demo_fault_switch_opens_the_breaker_moves_traffic_and_recovers() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "meshkit",
            "demo",
            "--duration",
            "11",
            "--rate",
            "300",
            "--fault",
            "failing",
            "--fault-after",
            "2",
            "--fault-for",
            "4",
        ],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    faulty = re.search(r"inventory-2 on (\S+) \(pid\s+(\d+)\)", out)
    assert faulty, out
    address, pid = faulty.group(1), faulty.group(2)
    began = float(re.search(r"t=\s*([\d.]+)s inventory-2 is now failing", out).group(1))  # type: ignore[union-attr]
    ended = float(re.search(r"t=\s*([\d.]+)s inventory-2 is now ok", out).group(1))  # type: ignore[union-attr]
    ticks = [
        (float(t), int(m.group(1)) if (m := re.search(r"'INTERNAL': (\d+)", errors)) else 0, served, breakers)
        for t, errors, served, breakers in re.findall(
            r"t=\s*([\d.]+)s calls/s=.*?errors=(\{.*?\}) served_by:((?: inventory-\d+=\d+)*) breakers: (.*)", out
        )
    ]
    state = [re.search(rf"inventory@{re.escape(address)}=(\w+)", b).group(1) for _, _, _, b in ticks]  # type: ignore[union-attr]
    opened = [t for (t, _, _, _), s in zip(ticks, state, strict=True) if s == "open"]
    assert opened, state
    assert min(opened) > began and min(opened) < ended, (began, ended, opened)  # opened by the fault, while it lasted
    # A failing inventory answers INTERNAL (not retried), so every call it gets is an error the
    # driver sees: over a second that starts and ends with its breaker open, only the breaker's
    # half-open probes (3 at most) may reach it, where round-robin alone would send it half the calls.
    internal = [n for _, n, _, _ in ticks]
    held_open = [i for i in range(1, len(ticks)) if state[i - 1] == state[i] == "open"]
    assert held_open, state
    assert all(internal[i] - internal[i - 1] <= 3 for i in held_open), list(zip(state, internal, strict=True))
    assert internal[-1] > 0  # the fault did reach the driver before the breaker opened
    last_served = f"inventory-{pid}=" in ticks[-1][2]
    assert state[-1] == "closed" and last_served, (state, ticks[-1])  # recovered: closed and serving again


@pytest.mark.slow
def test_demo_exports_traces_of_every_process_and_prints_their_ids() -> None:
    from tests.observe.otlp_receiver import OtlpReceiver

    receiver = OtlpReceiver()
    receiver.start()
    try:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "meshkit",
                "demo",
                "--duration",
                "4",
                "--rate",
                "200",
                "--gateway-port",
                "0",
                "--otlp",
                f"http://127.0.0.1:{receiver.port}",
            ],
            capture_output=True,
            text=True,
            timeout=90,
            cwd=ROOT,
        )
    finally:
        receiver.stop()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"metrics: inventory-1 http://127\.0\.0\.1:\d+/metrics", proc.stdout)
    printed = set(re.findall(r"trace: ([0-9a-f]{32})", proc.stdout))
    assert printed, proc.stdout
    by_trace: dict[str, set[str]] = {}
    for span in receiver.spans:
        by_trace.setdefault(span.trace_id, set()).add(span.service)
    complete = [t for t in printed if {"demo-client", "gateway", "order"} <= by_trace.get(t, set())]
    assert complete, (printed, by_trace)
    assert any(s.startswith("inventory-") for t in complete for s in by_trace[t])


def _readme_order_and_read_back() -> tuple[dict[str, object], int]:
    """The POST's answer the README shows and the order id its read-back command uses."""
    readme = (ROOT / "README.md").read_text()
    answer = re.search(r"-d '\{\"customer\".*\n(\{\"order_id\".*\})\n", readme)
    assert answer, "README shows no answer to placing an order"
    read_back = re.findall(r"curl -s localhost:8080/api/orders/(\d+)", readme)
    assert len(read_back) == 1, read_back
    return json.loads(answer.group(1)), int(read_back[0])


@pytest.mark.slow
def test_the_demo_answers_curl_through_its_gateway() -> None:
    """What the README shows: place an order, read it back, read stock, all over HTTP."""
    import httpx

    from meshkit.demo.services import DEMO_API_KEY

    with spawn(
        [sys.executable, "-m", "meshkit", "demo", "--duration", "4", "--rate", "20", "--gateway-port", "0"],
        ready=r"gateway on (http://\S+)",
        stderr="capture",
        cwd=ROOT,
        timeout=60,
    ) as proc:
        assert proc.ready_match is not None
        api = proc.ready_match[1]
        with httpx.Client(base_url=api, timeout=5) as http:
            order = {"customer": "ann", "sku": "apple", "qty": 2}
            placed = http.post("/api/orders", json=order, headers={"x-api-key": DEMO_API_KEY})
            assert placed.status_code == 201, placed.text
            body = placed.json()
            assert body["sku"] == "apple" and body["qty"] == 2 and body["inventory"].startswith("inventory-")
            again = http.get(f"/api/orders/{body['order_id']}")
            assert again.status_code == 200 and again.json() == body
            shown, read_back = _readme_order_and_read_back()
            assert shown.keys() == body.keys()  # the README shows the answer the POST gives
            assert read_back == shown["order_id"]  # and reads back the order with the id it was given
            assert http.post("/api/orders", json=order).status_code == 401  # placing needs the key
            stock = http.get("/api/stock/apple")
            assert stock.status_code == 200 and isinstance(stock.json(), int)
            assert http.get("/api/stock/durian").status_code == 404
            assert http.get("/openapi.json").json()["info"]["title"] == "meshkit demo shop"
        assert proc.wait(timeout=60) == 0, proc.tail()
