"""A blackholed instance (accepts, never answers): keepalive finds it, it is ejected, and no
request is sent to it afterwards (not even on the new connections the blackhole accepts: a pool
whose connection went silent trusts a new one only once it answers a PING); its calls fail fast
instead of running into their timeouts."""

from __future__ import annotations

import asyncio

from meshkit import Client, Server
from meshkit.protocol.keepalive import KeepaliveConfig
from meshkit.testing import FaultProxy
from tests.faults.calls import Callers, CallLog
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
    log = CallLog()
    async with Server([Greeter()], middleware=[]) as a, Server([Greeter()], middleware=[]) as b:
        async with FaultProxy(b.address) as proxy:
            hole = proxy.address
            client = Client(
                target=f"{a.address},{hole}",
                middleware=[log.middleware],
                keepalive=KEEPALIVE,
                timeout=TIMEOUT,
                balancer=BALANCER,
            )
            async with client:
                greeter = client.proxy(Greeter)
                callers = Callers(CALLERS, lambda: greeter.hello("x"))
                await until(lambda: log.served_by(hole) >= 20)  # B serves
                blackholed_at = asyncio.get_running_loop().time()
                proxy.blackhole()
                await until(lambda: any(r.outcome != "OK" and r.peer == hole for r in log.records))
                detected_at = min(r.end for r in log.records if r.outcome != "OK" and r.peer == hole)
                served_after = len(log)
                # 500 more calls, all elsewhere; and long enough for the pool to have reconnected
                # (into the blackhole) and probed it at least twice.
                await until(lambda: len(log) >= served_after + 500 and proxy.stats.accepted >= 3)
                await callers.stop()
    failed = [r for r in log.records if r.peer == hole and r.outcome != "OK"]
    detected = detected_at - blackholed_at
    sent_after = [r.start for r in log.records if r.peer == hole and r.start >= detected_at]
    errors_elsewhere = [r.outcome for r in log.records if r.peer != hole and r.outcome != "OK"]
    reliability.record(
        "blackholed instance",
        f"1 of 2 instances blackholed (connections accepted, nothing answered) under {CALLERS} callers, {BALANCER}",
        "keepalive detects it; its calls fail fast (UNAVAILABLE, not their 10 s timeout); "
        "requests sent to it after detection = 0",
        f"detected in {detected:.2f} s (keepalive {KEEPALIVE.interval}+{KEEPALIVE.timeout} s); "
        f"calls lost with it {len(failed)}; sent to it after detection {len(sent_after)} (while the pool "
        f"reconnected {proxy.stats.accepted - 1} times and probed); errors on the healthy one {len(errors_elsewhere)}",
    )
    assert failed and all(r.outcome == "UNAVAILABLE" for r in failed), failed  # keepalive, not the call timeout
    assert sent_after == [], (detected_at, sent_after)
    assert errors_elsewhere == [], errors_elsewhere
