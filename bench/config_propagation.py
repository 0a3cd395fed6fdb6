"""How fast a policy change reaches running services: put a revision, time until each of N
``meshkit run --policy URL`` processes reports it applied.

    python bench/config_propagation.py [--instances 10] [--changes 30] [--stores meshkit,etcd,zk,file]

Each store gets its own N service processes (``meshkit.benchmark.systems_meshkit:Echo``). The
changes are interleaved across the stores (one put to each in turn), so the stores are measured
under the same machine load; each put waits until every instance reported it. An instance's
latency is its ``applied_at`` (wall clock, written into its status key right after the new
rules took effect) minus the put's start. Next to it, a bare ``ConfigStore.watch`` in this process
times put -> change seen: the store's own floor, which the figure should be close to.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import msgspec

from meshkit.config import ConfigStore
from meshkit.config.release import status_prefix
from meshkit.testing import ChildProcess, spawn

KEY = "policy/echo"
ROOT = Path(__file__).resolve().parents[1]
ENV = {"PYTHONPATH": os.pathsep.join((str(ROOT / "src"), str(ROOT)))}


def policy(i: int) -> str:
    return f'[server."echo.*"]\nlimit = {{ rate = {1000 + i}, burst = {1000 + i} }}\n'


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_instances(url: str, n: int, cache: Path, name: str) -> list[ChildProcess]:
    argv = [sys.executable, "-m", "meshkit", "run", "meshkit.benchmark.systems_meshkit:Echo", "--port", "0"]
    procs = []
    for i in range(n):
        procs.append(
            spawn(
                [*argv, "--policy", url, "--no-access-log", "--log-level", "WARNING", "--instance-id", f"{name}-{i}"],
                ready=r"meshkit: serving",
                env={**ENV, "MESHKIT_CACHE_DIR": str(cache / name)},
                name=f"{name}-{i}",
                stderr="capture",
                timeout=60,
            )
        )
    return procs


async def all_applied(store: ConfigStore, n: int, revision: int, timeout: float = 30.0) -> list[float]:
    """Each instance's applied_at once all n report ``revision`` (polled every 2 ms)."""
    deadline = time.monotonic() + timeout
    while True:
        listing = await store.list(status_prefix(KEY))
        reports = [msgspec.json.decode(e.value) for e in listing]
        done = [r["applied_at"] for r in reports if r.get("revision") == revision]
        if len(done) >= n:
            return done
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(done)} of {n} instances applied revision {revision}")
        await asyncio.sleep(0.002)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def main(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="meshkit-propagation-"))
    children: list[ChildProcess] = []
    urls: dict[str, str] = {}
    if "meshkit" in args.stores:
        port = free_port()
        registry = spawn(
            [sys.executable, "-m", "meshkit", "registry", "--port", str(port), "--config-dir", str(work / "reg")],
            env=ENV,
            ready=r"registry serving on",
            name="registry",
            timeout=30,
        )
        children.append(registry)
        urls["meshkit"] = f"meshkit://127.0.0.1:{port}"
    if "etcd" in args.stores:
        urls["etcd"] = f"etcd://127.0.0.1:2379/bench-{uuid.uuid4().hex[:8]}"
    if "zk" in args.stores:
        urls["zk"] = f"zk://127.0.0.1:2181/meshkit-bench/propagation-{uuid.uuid4().hex[:8]}"
    if "file" in args.stores:
        urls["file"] = f"file://{work / 'file-store'}?poll=0.01"
    stores = {name: ConfigStore(url) for name, url in urls.items()}
    try:
        for name, store in stores.items():
            await store.put(KEY, policy(0))
            children += await asyncio.to_thread(start_instances, f"{urls[name]}#{KEY}", args.instances, work, name)
        latencies: dict[str, list[float]] = {name: [] for name in stores}
        floors: dict[str, list[float]] = {name: [] for name in stores}
        for i in range(1, args.changes + 1):
            for name, store in stores.items():
                seen = asyncio.get_running_loop().create_future()

                async def watch(store: ConfigStore = store, seen: asyncio.Future[float] = seen) -> None:
                    async for _ in store.watch(KEY, since=(await store.list(KEY)).revision):
                        seen.set_result(time.time())
                        return

                watcher = asyncio.create_task(watch())
                await asyncio.sleep(0.05)  # the bare watch is listening (it is timed, not trusted)
                start = time.time()
                revision = await store.put(KEY, policy(i))
                applied = await all_applied(store, args.instances, revision)
                floors[name].append(await seen - start)
                await watcher
                latencies[name] += [a - start for a in applied]
        print(f"{args.instances} instances per store, {args.changes} changes each, interleaved")
        print(f"{'store':<8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'bare watch p50':>15} {'p99':>7}")
        for name in stores:
            lat, floor = latencies[name], floors[name]
            print(
                f"{name:<8} {statistics.median(lat) * 1e3:8.1f} {pct(lat, 0.99) * 1e3:8.1f} {max(lat) * 1e3:8.1f}"
                f" {statistics.median(floor) * 1e3:15.1f} {pct(floor, 0.99) * 1e3:7.1f}"
            )
    finally:
        for child in reversed(children):  # the instances, then the registry they follow
            child.stop()
        for store in stores.values():
            await store.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, default=10)
    parser.add_argument("--changes", type=int, default=30)
    parser.add_argument("--stores", default="meshkit,etcd,zk,file")
    asyncio.run(main(parser.parse_args()))
