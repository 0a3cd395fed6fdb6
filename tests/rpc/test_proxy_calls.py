"""Calling a proxy method only builds an awaitable: nothing is checked, spent or sent until it is
awaited, so refusals reach ``asyncio.gather(..., return_exceptions=True)`` as results and a call
that is never awaited costs no limiter token."""

from __future__ import annotations

import asyncio

from meshkit import Client, RpcError, Server, StatusCode
from meshkit.policy import ClientRule, Limit, Policy, PolicyConfig, Shedding, Switches
from meshkit.testing import FakeClock
from tests.policy.services import Stock


def limited(rate: float, size: int) -> Policy:
    rule = ClientRule(limit=Limit(rate=rate, burst=size))
    config = PolicyConfig(shedding=Shedding(enabled=False), client={"stock.peek": rule})
    return Policy(config, clock=FakeClock(), switches=Switches())


async def test_a_client_limit_refusal_is_a_result_of_gather_and_the_others_are_sent() -> None:
    stock = Stock()
    policy = limited(rate=0.001, size=3)
    async with Server([stock], middleware=[]) as server, Client(target=server.address, policy=policy) as client:
        proxy = client.proxy(Stock)
        results = await asyncio.gather(*(proxy.peek(str(i)) for i in range(5)), return_exceptions=True)
    assert results[:3] == ["0", "1", "2"]
    assert all(isinstance(r, RpcError) and r.code is StatusCode.RESOURCE_EXHAUSTED for r in results[3:])
    assert stock.calls == 3  # every call whose token was spent was sent


async def test_a_switch_refusal_is_a_result_of_gather() -> None:
    policy = Policy(PolicyConfig(shedding=Shedding(enabled=False)), switches=Switches())
    async with Server([Stock()], middleware=[]) as server, Client(target=server.address, policy=policy) as client:
        policy.switches.set("stock.peek", True)
        results = await asyncio.gather(*(client.proxy(Stock).peek(str(i)) for i in range(3)), return_exceptions=True)
    assert all(isinstance(r, RpcError) and r.code is StatusCode.UNAVAILABLE and r.not_processed for r in results)


async def test_a_call_never_awaited_spends_no_token() -> None:
    stock = Stock()
    policy = limited(rate=0.001, size=1)
    async with Server([stock], middleware=[]) as server, Client(target=server.address, policy=policy) as client:
        proxy = client.proxy(Stock)
        unawaited = proxy.peek("never")
        unawaited.close()  # dropped without being awaited
        assert await proxy.peek("a") == "a"  # the only token is still there
    assert stock.calls == 1


async def test_an_argument_error_is_raised_when_awaited_not_when_called() -> None:
    async with Server([Stock()], middleware=[]) as server, Client(target=server.address) as client:
        proxy = client.proxy(Stock)
        results = await asyncio.gather(proxy.peek(), proxy.peek("b"), return_exceptions=True)  # type: ignore[call-arg]
    assert isinstance(results[0], RpcError) and results[0].code is StatusCode.INVALID_ARGUMENT
    assert results[0].not_processed
    assert results[1] == "b"
