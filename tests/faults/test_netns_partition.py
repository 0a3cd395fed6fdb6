"""A real partition: an instance in its own network namespace, cut off by taking its veth link
down (packets vanish; nothing is refused or reset), then healed. Where the runner cannot create
namespaces (not root), the same scenario runs through the FaultProxy's partition instead: never
skipped."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from meshkit import Client, RpcError, Server
from meshkit.policy import Policy
from meshkit.rpc.middleware import Call, Handler
from meshkit.testing import FaultProxy, NetnsLink, service_process
from meshkit.testing.netns import available
from tests.faults.conftest import ROOT, Reliability, until
from tests.faults.test_partitions import KEEPALIVE, POLICY, TIMEOUT
from tests.rpc.services import Greeter

CUT = 2.0


@asynccontextmanager
async def _cut_off_instance() -> AsyncIterator[tuple[str, Any, str]]:
    """(address of an instance that can be cut off, an object with cut()/heal(), how)."""
    if available():
        with NetnsLink(f"mkf{os.getpid()}") as link:
            env = {"PYTHONPATH": str(ROOT)}
            with service_process(
                "tests.rpc.services:Greeter",
                args=["--host", link.inside],
                env=env,
                cwd=str(ROOT),
                prefix=link.exec_args([]),
            ) as srv:
                yield srv.address, link, "network namespace, veth link down"
        return
    async with Server([Greeter()], middleware=[]) as b, FaultProxy(b.address) as proxy:

        class Cutter:
            cut = proxy.partition
            heal = proxy.heal

        yield proxy.address, Cutter(), "FaultProxy partition (no network namespaces here)"


async def test_an_instance_cut_off_at_the_network_fails_over_and_heals(reliability: Reliability) -> None:
    loop = asyncio.get_running_loop()
    log: list[tuple[float, float, str, str]] = []

    def recording(next_handler: Handler) -> Handler:
        async def handler(call: Call) -> Any:
            start = loop.time()
            try:
                result = await next_handler(call)
            except RpcError as exc:
                log.append((start, loop.time(), call.peer, exc.code.name))
                raise
            log.append((start, loop.time(), call.peer, "OK"))
            return result

        return handler

    async with Server([Greeter()], middleware=[]) as a, _cut_off_instance() as (far, cutter, how):
        client = Client(
            target=f"{a.address},{far}",
            middleware=[recording],
            keepalive=KEEPALIVE,
            timeout=TIMEOUT,
            policy=Policy(POLICY),
        )
        async with client:
            greeter = client.proxy(Greeter)
            stop = asyncio.Event()

            async def worker() -> None:
                while not stop.is_set():
                    try:
                        await greeter.sleep(0.005)
                    except RpcError:
                        await asyncio.sleep(0.005)  # pacing after a failure

            workers = [asyncio.create_task(worker()) for _ in range(8)]
            await until(lambda: sum(1 for *_, p, o in log if p == far and o == "OK") >= 20)
            cut_at = loop.time()
            await asyncio.to_thread(cutter.cut)
            await asyncio.sleep(CUT)  # the partition lasts this long (the scenario's input)
            healed = loop.time()
            await asyncio.to_thread(cutter.heal)
            await until(lambda: any(s > healed and p == far and o == "OK" for s, _, p, o in log), timeout=30)
            back = min(e for s, e, p, o in log if s > healed and p == far and o == "OK") - healed
            stop.set()
            await asyncio.gather(*workers)
    during = [o for s, e, p, o in log if cut_at < s < healed]
    served = sum(1 for o in during if o == "OK")
    longest = max(e - s for s, e, *_ in log)
    reliability.record(
        "real partition (network namespace)" if "namespace" in how else "real partition (proxy fallback)",
        f"1 of 2 instances cut off for {CUT:g} s: {how}; 8 callers, 1 s deadlines",
        "no call past its deadline; calls fail over; full service after heal",
        f"longest call {longest * 1000:.0f} ms; served during the cut {served} of {len(during)}; "
        f"the instance serves again {back:.2f} s after heal",
    )
    assert longest - TIMEOUT <= 0.25
    assert served > 0 and served >= len(during) // 2
