"""Live policies across real processes: ``meshkit run --policy meshkit://…`` follows a key of the
built-in registry's store (a process, with --config-dir); a limit put with ``meshkit config put``
applies without a restart; started while the registry is down, the service runs its cached
revision and says so; the registry back, it converges."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import msgspec

from meshkit import Client, RpcError
from meshkit.config import ConfigStore
from meshkit.config.release import status_key
from meshkit.testing import ChildProcess, spawn
from tests.helpers import CHILD_PYTHONPATH, ROOT, eventually
from tests.policy.services import Stock
from tests.resilience.redis_engine import closed_port

KEY = "policy/stock"


def limit(burst: int) -> str:
    # rate 0.001: no token comes back within a test, so admitted calls count the burst
    return f'[shedding]\nenabled = false\n[server."stock.peek"]\nlimit = {{ rate = 0.001, burst = {burst} }}\n'


def registry(port: int, config_dir: Path) -> ChildProcess:
    argv = [sys.executable, "-m", "meshkit", "registry", "--port", str(port), "--config-dir", str(config_dir)]
    return spawn(argv, env={"PYTHONPATH": CHILD_PYTHONPATH}, ready=r"registry serving on", name="registry", timeout=30)


def POLICY_ARGS(store: str) -> list[str]:
    return ["--policy", f"{store}/{KEY}", "--no-access-log", "--instance-id", "stock-1"]


def service(store: str, cache: Path) -> tuple[ChildProcess, int]:
    proc = spawn(
        [sys.executable, "-m", "meshkit", "run", "tests.policy.services:Stock", "--port", "0", *POLICY_ARGS(store)],
        ready=r"meshkit: serving .* on [^\s:]+:(\d+)",
        cwd=ROOT,
        env={"PYTHONPATH": CHILD_PYTHONPATH, "MESHKIT_CACHE_DIR": str(cache)},
        name="stock",
        stderr="capture",
        keep=400,
        timeout=30,
    )
    assert proc.ready_match is not None
    return proc, int(proc.ready_match[1])


def config_cli(*args: str, value: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "meshkit", "config", *args],
        input=value,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": CHILD_PYTHONPATH, "PATH": "/usr/bin:/bin"},
        timeout=60,
        check=False,
    )


async def admitted(port: int, n: int) -> int:
    ok = 0
    async with Client(target=f"127.0.0.1:{port}") as client:
        for i in range(n):
            try:
                await client.proxy(Stock).peek(str(i))
            except RpcError:
                continue
            ok += 1
    return ok


async def reported(store: ConfigStore, revision: int) -> bool:
    entry = await store.get(status_key(KEY, "stock-1"))
    return entry is not None and msgspec.json.decode(entry.value)["revision"] == revision


async def test_a_limit_put_from_the_cli_applies_live_and_the_cache_carries_a_start_without_the_center(
    tmp_path: Path,
) -> None:
    port = closed_port()
    url = f"meshkit://127.0.0.1:{port}"
    center = await asyncio.to_thread(registry, port, tmp_path / "config")
    stock: ChildProcess | None = None
    try:
        put = await asyncio.to_thread(config_cli, "put", KEY, "--store", url, "--policy", value=limit(2))
        assert put.returncode == 0, put.stderr
        stock, stock_port = await asyncio.to_thread(service, url, tmp_path / "cache")
        assert await admitted(stock_port, 3) == 2
        put = await asyncio.to_thread(config_cli, "put", KEY, "--store", url, value=limit(5))
        second = int(put.stdout)
        async with ConfigStore(url) as store:
            await eventually(lambda: reported(store, second), what="the service reporting the new revision")
        status = await asyncio.to_thread(config_cli, "status", KEY, "--store", url)
        assert status.returncode == 0 and "stock-1" in status.stdout and str(second) in status.stdout
        assert await admitted(stock_port, 6) == 5, "the new burst, without a restart"
        bad = await asyncio.to_thread(config_cli, "put", KEY, "--store", url, "--policy", value="[server\n")
        assert bad.returncode == 2 and "not valid TOML" in bad.stderr  # refused before it was written

        await asyncio.to_thread(stock.stop)
        await asyncio.to_thread(center.stop)
        stock, stock_port = await asyncio.to_thread(service, url, tmp_path / "cache")
        assert any(f"running cached revision {second}" in line for line in stock.tail()), "it says so"
        assert await admitted(stock_port, 6) == 5, "the cached revision runs"

        center = await asyncio.to_thread(registry, port, tmp_path / "config")
        async with ConfigStore(url) as store:
            third = await store.put(KEY, limit(1))
            await eventually(lambda: reported(store, third), timeout=20, what="the service catching up")
        assert await admitted(stock_port, 2) == 1
    finally:
        if stock is not None:
            stock.stop()
        center.stop()


def test_meshkit_run_refuses_a_policy_key_that_does_not_exist(tmp_path: Path) -> None:
    policy = ["--policy", f"file://{tmp_path / 'store'}#policy/typo"]
    proc = subprocess.run(
        [sys.executable, "-m", "meshkit", "run", "tests.policy.services:Stock", "--port", "0", *policy],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PYTHONPATH": CHILD_PYTHONPATH, "PATH": "/usr/bin:/bin", "MESHKIT_CACHE_DIR": str(tmp_path / "c")},
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert "has no key 'policy/typo'" in proc.stderr and "meshkit config put policy/typo" in proc.stderr
