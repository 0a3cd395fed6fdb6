"""A call is sent at most ``max_attempts`` times in all, also when every server refuses it (a fleet
at its rate limit)."""

from __future__ import annotations

import pytest

from meshkit import Client, RpcError, Server
from meshkit.policy import Breaker, ClientRule, Limit, Policy, PolicyConfig, Retry, ServerRule, Switches
from meshkit.testing import FakeClock
from tests.policy.policies import NO_SHED, client_policy
from tests.policy.services import Stock


async def test_refused_calls_are_sent_at_most_max_attempts_times() -> None:
    server_clock = FakeClock()
    rule = ServerRule(limit=Limit(rate=10, burst=1))
    policies = [
        Policy(PolicyConfig(shedding=NO_SHED, server={"stock.peek": rule}), clock=server_clock, switches=Switches())
        for _ in range(3)
    ]
    servers = [Server([Stock()], policy=sp, middleware=[]) for sp in policies]
    for s in servers:
        await s.start()
    try:
        for s in servers:  # the fleet is at its rate limit
            async with Client(target=s.address) as c:
                await c.proxy(Stock).peek("drain")
        retry = ClientRule(retry=Retry(max_attempts=3), breaker=Breaker(kind="off"))
        p = client_policy(stock__peek=retry)
        target = ",".join(s.address for s in servers)
        async with Client(target=target, policy=p) as client:
            with pytest.raises(RpcError):
                await client.proxy(Stock).peek("x")
        sent = sum(sp.rejected["limit"] for sp in policies)
        assert sent <= 3, f"one call with max_attempts=3 was sent {sent} times"
    finally:
        for s in servers:
            await s.stop()
