"""The registry is down for longer than the lease TTL, then back (empty: it keeps nothing): calls
keep working on the endpoints clients know, none is dropped, and instances register again. While
the empty registry re-learns, the client holds the instances it knew (registry amnesia guard):
the instances' heartbeats are held back until the client's watch has seen the empty registry.
After the heal the client follows the registry again: a new instance is added, a deregistered one
dropped."""

from __future__ import annotations

import asyncio
import socket

import pytest

from meshkit import Client
from meshkit.discovery import open_registry
from meshkit.discovery.events import WATCH_EVENTS
from meshkit.testing import FaultProxy, ServiceProcess, registry_process, service_process
from tests.faults.calls import Callers
from tests.faults.conftest import ROOT, Reliability, until
from tests.helpers import CHILD_PYTHONPATH
from tests.rpc.services import Greeter

TTL = 2.0
OUTAGE = 4.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.timeout(120)
async def test_a_registry_outage_longer_than_the_ttl_drops_no_endpoint(reliability: Reliability) -> None:
    env = {"PYTHONPATH": CHILD_PYTHONPATH}
    port = _free_port()
    url = f"meshkit://127.0.0.1:{port}?ttl={TTL:g}"
    with registry_process(["--port", str(port)]) as first:
        # The instances reach the registry through a proxy: after the restart it holds their
        # heartbeats until the client's watch has seen the empty registry, so the amnesia the
        # client must survive happens on every run, not only when the race goes that way.
        async with FaultProxy(f"127.0.0.1:{port}") as proxy:
            proxied = f"meshkit://{proxy.address}?ttl={TTL:g}"
            instances = [
                service_process("tests.rpc.services:Greeter", registry=proxied, env=env, cwd=str(ROOT))
                for _ in range(2)
            ]
            try:
                for cm in instances:  # from a thread: the proxy runs on this loop
                    await asyncio.to_thread(cm.__enter__)
                figures = await _outage(url, port, first, proxy)
            finally:
                for cm in instances:
                    await asyncio.to_thread(cm.__exit__, None, None, None)
    during, dropped_during, transient, reregistered = figures
    total = during["ok"] + during["failed"]
    reliability.record(
        f"registry outage longer than the TTL ({OUTAGE:g} s down, TTL {TTL:g} s)",
        "the built-in registry SIGKILLed, restarted empty on the same port after 4 s (the instances' heartbeats "
        "held until the client's watch has seen it empty); 2 instances; 4 callers",
        "calls keep working; endpoints dropped = 0, also while the empty registry re-learns; instances register "
        "again; after the heal the client sees a new instance and a deregistration",
        f"success during the outage {during['ok']}/{total} ({100 * during['ok'] / max(total, 1):.1f} %); endpoints "
        f"dropped during it {dropped_during}; dropped while the empty registry re-learned {transient} (held against "
        f"registry amnesia); both registered again {reregistered:.2f} s after their heartbeats could get through",
    )
    assert during["failed"] == 0 and during["ok"] > 0
    assert dropped_during == 0
    assert transient == 0, "the client believed the empty registry's first snapshots"


async def _outage(
    url: str, port: int, first: ServiceProcess, proxy: FaultProxy
) -> tuple[dict[str, int], int, int, float]:
    loop = asyncio.get_running_loop()
    async with Client(registry=url, middleware=[], timeout=1.0) as client:
        greeter = client.proxy(Greeter)
        await greeter.hello("warm")

        def known() -> int:
            eps = client.endpoints().get("greeter")
            return len(eps.nodes) if eps is not None else 0

        await until(lambda: known() == 2)
        smallest = 2

        def watch_known() -> None:
            nonlocal smallest
            smallest = min(smallest, known())

        callers = Callers(4, lambda: greeter.hello("x"), after_each=watch_known)
        first.kill()
        await asyncio.to_thread(first.wait, 10)
        await asyncio.sleep(OUTAGE)  # the outage lasts this long (the scenario's input)
        during = {"ok": callers.ok, "failed": callers.failed}
        dropped_during = 2 - smallest
        smallest = 2  # from here: while the restarted (empty) registry is re-learning
        proxy.partition()
        snapshots = WATCH_EVENTS["greeter", "snapshot"]
        with registry_process(["--port", str(port)]):
            await until(lambda: WATCH_EVENTS["greeter", "snapshot"] > snapshots, 30)  # the watch saw it empty
            healed = loop.time()
            proxy.heal()
            registry = open_registry(url)
            try:
                while len(await registry.resolve("greeter")) < 2:
                    if loop.time() - healed > 30:
                        raise AssertionError("the instances did not register again")
                    await asyncio.sleep(0.05)  # polling the registry, bounded
                reregistered = loop.time() - healed
            finally:
                await registry.close()
            await _watch_follows_the_registry(client, url)
            await callers.stop()
    return during, dropped_during, 2 - smallest, reregistered


async def _watch_follows_the_registry(client: Client, url: str) -> None:
    """After the heal the client's watch is live again, not frozen on the endpoints it held: an
    instance that registers now is added, and one that deregisters is dropped."""
    env = {"PYTHONPATH": CHILD_PYTHONPATH}

    def addresses() -> set[str]:
        eps = client.endpoints().get("greeter")
        return {n.peer.address for n in eps.nodes} if eps is not None else set()

    before = addresses()
    late = service_process("tests.rpc.services:Greeter", registry=url, env=env, cwd=str(ROOT))
    newcomer = await asyncio.to_thread(late.__enter__)
    try:
        await until(lambda: addresses() == before | {newcomer.address}, 30)  # the new instance is seen
        newcomer.terminate()  # graceful: it deregisters before it exits
        assert await asyncio.to_thread(newcomer.wait, 15) == 0
        await until(lambda: addresses() == before, 30)  # ...and its deregistration too
    finally:
        await asyncio.to_thread(late.__exit__, None, None, None)
