"""A frozen (SIGSTOP) or killed (SIGKILL) instance leaves every registry within its TTL, and a live
one never does.

Real processes, real engines (etcd, ZooKeeper from scripts/engines.sh; the built-in registry in the
test process). TTL 3 s; renewals every TTL/3, so the instance leaves between 2/3 TTL and TTL after
it froze, plus the backend's expiry granularity. The measured delays are printed (-s) and recorded
in docs/benchmarks.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from meshkit import Client, RpcError, Server
from meshkit.discovery import open_registry
from meshkit.registry import RegistryService
from meshkit.testing import ChildProcess, spawn
from tests.helpers import CHILD_PYTHONPATH, LoopLag
from tests.rpc.services import Greeter

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
TTL = 3.0


def _require(port: int, name: str) -> None:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        pytest.fail(f"{name} is not running on 127.0.0.1:{port}; start it with: bash scripts/engines.sh")


@pytest.fixture(params=["meshkit", "etcd", "zk"])
async def registry_url(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    prefix = f"/meshkit-test/{uuid.uuid4().hex}"
    if request.param == "meshkit":
        service = RegistryService(evict_every=0.1)
        server = Server([service], middleware=[])
        await server.start()
        service.start()
        yield f"meshkit://{server.address}?ttl={TTL}"
        await service.stop()
        await server.stop(grace=0.1)
    elif request.param == "etcd":
        _require(2379, "etcd")
        yield f"etcd://127.0.0.1:2379{prefix}?ttl={int(TTL)}"
    else:
        _require(2181, "ZooKeeper")
        yield f"zk://127.0.0.1:2181{prefix}?ttl={TTL}"


def _start_instance(url: str) -> tuple[ChildProcess, int]:
    proc = spawn(
        [
            sys.executable,
            "-m",
            "meshkit",
            "run",
            "tests.rpc.services:Greeter",
            "--port",
            "0",
            "--registry",
            url,
            "--no-access-log",
            "--log-level",
            "ERROR",
        ],
        ready=r"^meshkit: serving .* on [^\s:]+:(\d+)",
        cwd=ROOT,
        env={"PYTHONPATH": CHILD_PYTHONPATH},
        grace=0,  # stopped with SIGCONT and SIGKILL
        timeout=30,
    )
    assert proc.ready_match is not None
    return proc, int(proc.ready_match[1])


@pytest.mark.parametrize("sig", [signal.SIGSTOP, signal.SIGKILL], ids=["SIGSTOP", "SIGKILL"])
async def test_dead_or_frozen_instance_leaves_within_its_ttl(registry_url: str, sig: signal.Signals) -> None:
    # In a thread: the built-in registry runs on this loop and must answer the registrations.
    (frozen, frozen_port), (alive, alive_port) = await asyncio.gather(
        asyncio.to_thread(_start_instance, registry_url), asyncio.to_thread(_start_instance, registry_url)
    )
    registry = open_registry(registry_url)
    client = Client(registry=registry_url, timeout=0.3)
    sent: list[tuple[float, int]] = []  # (time, port) of every call the client sent
    stop_load = asyncio.Event()

    async def load() -> None:
        greeter = client.proxy(Greeter)
        while not stop_load.is_set():
            await asyncio.sleep(0.01)
            with contextlib.suppress(RpcError):
                await greeter.hello("x")

    loader: asyncio.Task[None] | None = None
    lag = LoopLag().start()  # the built-in registry's eviction timer runs on this loop: as late as it is
    try:
        for _ in range(100):
            if len(await registry.resolve("greeter")) == 2:
                break
            await asyncio.sleep(0.1)
        assert {i.port for i in await registry.resolve("greeter")} == {frozen_port, alive_port}
        await client.proxy(Greeter).hello("warm")
        eps = client._services["greeter"]
        original_pick = eps.pick

        def recording_pick(*args, **kwargs):  # type: ignore[no-untyped-def]
            peer, done = original_pick(*args, **kwargs)
            sent.append((time.monotonic(), int(peer.address.rsplit(":", 1)[1])))
            return peer, done

        eps.pick = recording_pick  # type: ignore[method-assign]
        loader = asyncio.create_task(load())
        await asyncio.sleep(0.3)
        frozen.signal(sig)
        stopped = time.monotonic()
        while True:
            ports = {i.port for i in await registry.resolve("greeter")}
            elapsed = time.monotonic() - stopped
            assert alive_port in ports, "a live instance was removed"
            if frozen_port not in ports:
                break
            assert elapsed - lag.worst < TTL + 3.0, f"still listed after {elapsed:.1f}s (loop lag {lag.worst:.2f}s)"
            await asyncio.sleep(0.05)
        last_send = max((t for t, port in sent if port == frozen_port), default=stopped) - stopped
        print(
            f"\n{registry_url.split(':')[0]}: instance removed {elapsed:.2f}s after {sig.name} (TTL {TTL}s); "
            f"the client's last call to it was sent {last_send:.2f}s after"
        )
        # Never past the registry's removal (plus the watch's delivery, which the loop's lag delays).
        assert last_send <= elapsed + 1.0 + lag.worst, (last_send, elapsed, lag.worst)
        assert elapsed >= TTL * 0.6, f"removed after only {elapsed:.2f}s: before its TTL could have run out"
        # The live one stays for several more TTLs.
        await asyncio.sleep(TTL * 1.5)
        assert {i.port for i in await registry.resolve("greeter")} == {alive_port}
    finally:
        lag.stop()
        stop_load.set()
        if loader is not None:
            await loader
        await client.close()
        await registry.close()
        for proc in (frozen, alive):
            proc.stop()
