"""A blackholed instance (accepts, never answers): keepalive finds it, it is ejected, and no
request is sent to it afterwards (not even on the new connections the blackhole accepts: a pool
whose connection went silent trusts a new one only once it answers a PING); its calls fail fast
instead of running into their timeouts."""

from __future__ import annotations

import asyncio
from typing import Any

from meshkit import Client, RpcError, Server
from meshkit.protocol.keepalive import KeepaliveConfig
from meshkit.rpc.middleware import Call, Handler
from meshkit.testing import FaultProxy
from tests.faults.conftest import Reliability, until
from tests.rpc.services import Greeter

KEEPALIVE = KeepaliveConfig(interval=0.2, timeout=0.2)
TIMEOUT = 10.0
#: Few enough that fewer calls than outlier ejection needs (5 in a row) die with the instance:
#: it is the pool, not the outlier detector, that must keep requests away from it.
CALLERS = 3
#: Round robin has no latency memory to steer away with (p2c does): the pool alone must do it.
BALANCER = "round_robin"


async def test_a_blackholed_instance_is_found_by_keepalive_and_gets_no_more_requests(
    reliability: Reliability,
) -> None:
    log: list[tuple[float, float, str, str]] = []  # (start, end, peer, outcome)
    loop = asyncio.get_running_loop()

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

    async with Server([Greeter()], middleware=[]) as a, Server([Greeter()], middleware=[]) as b:
        async with FaultProxy(b.address) as proxy:
            target = f"{a.address},{proxy.address}"
            async with Client(
                target=target, middleware=[recording], keepalive=KEEPALIVE, timeout=TIMEOUT, balancer=BALANCER
            ) as client:
                greeter = client.proxy(Greeter)
                stop = asyncio.Event()

                async def worker() -> None:
                    while not stop.is_set():
                        try:
                            await greeter.hello("x")
                        except RpcError:
                            await asyncio.sleep(0.001)  # a call that fails at once must still yield the loop

                workers = [asyncio.create_task(worker()) for _ in range(CALLERS)]
                await until(lambda: sum(1 for _, _, p, _ in log if p == proxy.address) >= 20)  # B serves
                blackholed_at = loop.time()
                proxy.blackhole()
                await until(lambda: any(o != "OK" and p == proxy.address for _, _, p, o in log))
                detected_at = min(end for _, end, p, o in log if o != "OK" and p == proxy.address)
                served_after = len(log)
                # 500 more calls, all elsewhere; and long enough for the pool to have reconnected
                # (into the blackhole) and probed it at least twice.
                await until(lambda: len(log) >= served_after + 500 and proxy.stats.accepted >= 3)
                stop.set()
                await asyncio.gather(*workers)
    failed = [(start, o) for start, _, p, o in log if p == proxy.address and o != "OK"]
    detected = detected_at - blackholed_at
    sent_after = [start for start, _, p, _ in log if p == proxy.address and start >= detected_at]
    errors_elsewhere = [o for _, _, p, o in log if p != proxy.address and o != "OK"]
    reliability.record(
        "blackholed instance",
        f"1 of 2 instances blackholed (connections accepted, nothing answered) under {CALLERS} callers, {BALANCER}",
        "keepalive detects it; its calls fail fast (UNAVAILABLE, not their 10 s timeout); "
        "requests sent to it after ejection = 0",
        f"detected in {detected:.2f} s (keepalive {KEEPALIVE.interval}+{KEEPALIVE.timeout} s); "
        f"calls lost with it {len(failed)}; sent to it after detection {len(sent_after)} (while the pool "
        f"reconnected {proxy.stats.accepted - 1} times and probed); errors on the healthy one {len(errors_elsewhere)}",
    )
    assert failed and all(o == "UNAVAILABLE" for _, o in failed), failed  # keepalive, not the call timeout
    assert sent_after == [], (detected_at, sent_after)
    assert errors_elsewhere == [], errors_elsewhere
