"""Gateway benchmark: HTTP requests/s through ``meshkit gateway`` and the latency it adds, against
calling the same service directly over meshkit RPC, on loopback.

    python bench/gateway.py [--duration 5] [--concurrency 1,64] [--json PATH]

Processes: the echo service on cpu1; the gateway (or, for the direct rows, the meshkit RPC load
client) on cpu0; wrk (1 thread) on cpu1 with the service. The front process on cpu0 is the one
measured: the gateway's HTTP parsing, auth, limits, mapping and RPC client against a bare RPC
client's. The route is public and the call an echo of a small struct, so what is measured is
the gateway's own cost. Needs wrk (``apt-get install wrk``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from meshkit.testing import ChildNotReady, ChildProcess, spawn

CONFIG = """
[gateway]
port = 0
services = ["meshkit.benchmark.systems_meshkit:Echo"]
log_level = "error"

[targets]
echo = "{address}"

[[routes]]
method = "POST"
path = "/echo"
call = "echo.echo"
body = "item"
public = true
"""
LUA = """
wrk.method = "POST"
wrk.body = '{body}'
wrk.headers["Content-Type"] = "application/json"
"""


def _spawn(cmd: list[str], pattern: str, timeout: float = 20.0) -> tuple[ChildProcess, str]:
    """Start ``cmd`` (its stderr kept for the error if it does not start), wait for ``pattern``."""
    try:
        proc = spawn(cmd, ready=pattern, stderr="capture", new_session=False, grace=10, timeout=timeout)
    except ChildNotReady as exc:
        raise SystemExit(str(exc)) from None
    assert proc.ready_match is not None
    return proc, proc.ready_match[1]


def _wrk(url: str, concurrency: int, duration: float, script: Path) -> dict[str, Any]:
    cmd = ["taskset", "-c", "1", "wrk", "-t1", f"-c{concurrency}", f"-d{duration:g}s", "--latency", "-s", str(script)]
    done = subprocess.run([*cmd, url], capture_output=True, text=True, timeout=duration + 60, check=True)
    out = done.stdout
    if "Requests/sec" not in out or re.search(r"Requests/sec:\s+0\.", out):
        raise SystemExit(f"wrk measured nothing:\n{out}\n{done.stderr}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)

    def pct(label: str) -> float:
        value, unit = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()  # type: ignore[union-attr]
        return float(value) * {"us": 1.0, "ms": 1000.0, "s": 1e6}[unit]

    return {
        "calls_per_s": rps,
        "p50_us": pct("50"),
        "p99_us": pct("99"),
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
        "socket_errors": errors.group(1) if errors else "",
    }


def _direct(port: int, concurrency: int, duration: float) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "meshkit.benchmark", "load", "meshkit-default", "--port", str(port)]
    cmd += ["--concurrency", str(concurrency), "--duration", repr(duration), "--warmup", "1", "--cpu", "0"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60, check=True)
    row: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return {"calls_per_s": row["calls_per_s"], "p50_us": row["p50_us"], "p99_us": row["p99_us"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--concurrency", default="1,64")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("bench/gateway.py needs wrk: apt-get install wrk", file=sys.stderr)
        return 2
    levels = [int(c) for c in args.concurrency.split(",")]
    work = Path(tempfile.mkdtemp(prefix="meshkit-bench-gw-"))
    service = gateway = None
    rows: list[dict[str, Any]] = []
    try:
        service, address = _spawn(
            [
                "taskset",
                "-c",
                "1",
                sys.executable,
                "-m",
                "meshkit.benchmark",
                "serve",
                "meshkit-default",
                "--port",
                "0",
            ],
            r"PORT (\d+)",
        )
        address = f"127.0.0.1:{address}"
        config = work / "gateway.toml"
        config.write_text(CONFIG.format(address=address))
        gateway, url = _spawn(
            [
                "taskset",
                "-c",
                "0",
                sys.executable,
                "-m",
                "meshkit",
                "gateway",
                "--config",
                str(config),
                "--no-access-log",
            ],
            r"gateway on (http://\S+)",
        )
        script = work / "post.lua"
        script.write_text(LUA.format(body=json.dumps({"id": 42, "name": "alice", "tags": ["a", "b"]})))
        _wrk(url + "/echo", 8, 1.0, script)  # warm up: connections, the gateway's client pool
        for c in levels:
            via = _wrk(url + "/echo", c, args.duration, script)
            direct = _direct(int(address.rsplit(":", 1)[1]), c, args.duration)
            rows.append({"concurrency": c, "gateway": via, "direct_rpc": direct})
            ratio = via["calls_per_s"] / direct["calls_per_s"]
            added = via["p50_us"] - direct["p50_us"]
            print(
                f"c={c:3d}  gateway {via['calls_per_s']:9.0f} req/s p50 {via['p50_us']:8.1f} us"
                f" p99 {via['p99_us']:8.1f} us (non-2xx {via['non_2xx']})  |  direct RPC"
                f" {direct['calls_per_s']:9.0f} calls/s p50 {direct['p50_us']:8.1f} us p99 {direct['p99_us']:8.1f} us"
                f"  |  ratio {ratio:.2f}x, added p50 {added:.0f} us",
                flush=True,
            )
    finally:
        for proc in (gateway, service):
            if proc is not None:
                proc.stop()
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        machine = {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()}
        Path(args.json).write_text(
            json.dumps({"machine": machine, "duration_s": args.duration, "rows": rows}, indent=1)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
