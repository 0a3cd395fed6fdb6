"""A slow instance (+75 ms ± 50 ms on the wire, each way) among three: the balancer moves its
traffic to the others; the p99 of the whole service is reported against a run without the fault."""

from __future__ import annotations

import asyncio
import contextlib
import random
from typing import Any

from meshkit import Client, Server
from meshkit.rpc.middleware import Call, Handler
from meshkit.testing import FaultProxy
from tests.faults.conftest import Reliability
from tests.rpc.services import Greeter

CALLS = 1500
CALLERS = 8


async def _run(slow: bool) -> tuple[dict[str, int], list[float], str]:
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    by_peer: dict[str, int] = {}

    def recording(next_handler: Handler) -> Handler:
        async def handler(call: Call) -> Any:
            start = loop.time()
            result = await next_handler(call)
            latencies.append(loop.time() - start)
            by_peer[call.peer] = by_peer.get(call.peer, 0) + 1
            return result

        return handler

    async with contextlib.AsyncExitStack() as stack:
        # Every instance behind a proxy of its own, so that without the fault all three pay the
        # same hop and get about a third each; the fault is latency on the last one.
        proxies = []
        for n in range(3):
            server = await stack.enter_async_context(Server([Greeter()], middleware=[]))
            proxies.append(await stack.enter_async_context(FaultProxy(server.address, rng=random.Random(n))))
        proxy = proxies[-1]
        if slow:
            proxy.latency(0.075, jitter=0.05)
        target = ",".join(p.address for p in proxies)
        async with Client(target=target, middleware=[recording]) as client:
            greeter = client.proxy(Greeter)
            remaining = [CALLS]

            async def worker() -> None:
                while remaining[0] > 0:
                    remaining[0] -= 1
                    await greeter.hello("x")

            await asyncio.gather(*(worker() for _ in range(CALLERS)))
        return by_peer, latencies, proxy.address


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[int(0.99 * (len(ordered) - 1))]


async def test_a_slow_instance_loses_its_share_of_traffic(reliability: Reliability) -> None:
    base_peers, base_latencies, base_slow = await _run(slow=False)
    peers, latencies, slow = await _run(slow=True)
    share = peers.get(slow, 0) / sum(peers.values())
    fair = base_peers.get(base_slow, 0) / sum(base_peers.values())
    reliability.record(
        "slow instance",
        "1 of 3 instances +75 ms ± 50 ms each way (proxy latency), 8 callers, 1,500 calls",
        "its traffic share drops well below a fair third",
        f"share {share:.1%} (without the fault {fair:.1%}); service p99 {_p99(latencies) * 1000:.1f} ms "
        f"vs {_p99(base_latencies) * 1000:.1f} ms without",
    )
    # Without the fault the instance gets a real part (every instance is behind the same kind of
    # proxy), so the drop below is the fault's doing.
    assert fair > 0.15
    assert share < fair / 4
