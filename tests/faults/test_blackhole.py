"""A blackholed instance (accepts, never answers): keepalive finds it, it is ejected, and no
request is sent to it afterwards; its calls fail fast instead of running into their timeouts."""

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


async def test_a_blackholed_instance_is_found_by_keepalive_and_gets_no_more_requests(
    reliability: Reliability,
) -> None:
    log: list[tuple[float, str, str]] = []  # (start, peer, outcome)
    loop = asyncio.get_running_loop()

    def recording(next_handler: Handler) -> Handler:
        async def handler(call: Call) -> Any:
            start = loop.time()
            try:
                result = await next_handler(call)
            except RpcError as exc:
                log.append((start, call.peer, exc.code.name))
                raise
            log.append((start, call.peer, "OK"))
            return result

        return handler

    async with Server([Greeter()], middleware=[]) as a, Server([Greeter()], middleware=[]) as b:
        async with FaultProxy(b.address) as proxy:
            target = f"{a.address},{proxy.address}"
            async with Client(target=target, middleware=[recording], keepalive=KEEPALIVE, timeout=TIMEOUT) as client:
                greeter = client.proxy(Greeter)
                stop = asyncio.Event()

                async def worker() -> None:
                    while not stop.is_set():
                        try:
                            await greeter.hello("x")
                        except RpcError:
                            await asyncio.sleep(0.001)  # a call that fails at once must still yield the loop

                workers = [asyncio.create_task(worker()) for _ in range(8)]
                await until(lambda: sum(1 for _, p, _ in log if p == proxy.address) >= 20)  # B serves
                blackholed_at = loop.time()
                proxy.blackhole()
                await until(lambda: any(o != "OK" and p == proxy.address for _, p, o in log))
                ejected_at = max(t for t, p, o in log if o != "OK" and p == proxy.address)
                served_after = len(log)
                await until(lambda: len(log) >= served_after + 500)  # 500 more calls, all elsewhere
                stop.set()
                await asyncio.gather(*workers)
    failed = [(t, o) for t, p, o in log if p == proxy.address and o != "OK"]
    detected = max(t for t, _ in failed) - blackholed_at if failed else None
    sent_after = [t for t, p, _ in log if p == proxy.address and t > ejected_at + 0.001]
    errors_elsewhere = [o for _, p, o in log if p != proxy.address and o != "OK"]
    reliability.record(
        "blackholed instance",
        "1 of 2 instances blackholed (connections accepted, nothing answered) under 8 callers",
        "keepalive detects it; its calls fail fast (UNAVAILABLE, not their 10 s timeout); "
        "requests sent to it after ejection = 0",
        f"detected in {detected:.2f} s (keepalive {KEEPALIVE.interval}+{KEEPALIVE.timeout} s); "
        f"calls lost with it {len(failed)}; sent to it after ejection {len(sent_after)}; "
        f"errors on the healthy one {len(errors_elsewhere)}"
        if detected is not None
        else "not detected",
    )
    assert failed and all(o == "UNAVAILABLE" for _, o in failed), failed  # keepalive, not the call timeout
    assert sent_after == [], (ejected_at, sent_after)
    assert errors_elsewhere == [], errors_elsewhere
