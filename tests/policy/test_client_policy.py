"""Client-side policies through real servers: breakers, retries with a budget, deadlines,
hedging, client limits, fallbacks and per-instance breakers."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from meshkit import Client, RpcError, Server, StatusCode
from meshkit.policy import Breaker, ClientRule, Limit, Policy, PolicyConfig, Retry, Shedding, Switches
from meshkit.testing import FakeClock, FakeSleep, serve
from tests.policy.services import Stock

NO_SHED = Shedding(enabled=False)


async def no_sleep(_: float) -> None:
    return None


def client_policy(clock: Any = None, sleep: Any = no_sleep, rng: Any = None, **rules: ClientRule) -> Policy:
    config = PolicyConfig(shedding=NO_SHED, client={k.replace("__", "."): v for k, v in rules.items()})
    return Policy(config, clock=clock or FakeClock(), sleep=sleep, rng=rng, switches=Switches())


async def test_breaker_opens_fails_fast_and_recovers_through_half_open_probes() -> None:
    clock = FakeClock()
    stock = Stock()
    stock.error = StatusCode.INTERNAL
    rule = ClientRule(breaker=Breaker(min_calls=4, open_for=5, half_open_probes=2), retry=Retry(max_attempts=1))
    p = client_policy(clock, stock__peek=rule)
    events: list[tuple[str, str, str]] = []
    p.events.subscribe(lambda *e: events.append(e))
    async with Server([stock], middleware=[]) as server, Client(target=server.address, policy=p) as client:
        proxy = client.proxy(Stock)
        for _ in range(4):
            with pytest.raises(RpcError, match="on purpose"):
                await proxy.peek("x")
        with pytest.raises(RpcError) as err:
            await proxy.peek("x")
        assert err.value.code is StatusCode.UNAVAILABLE and err.value.not_processed
        assert err.value.details == {"reason": "breaker_open", "retry_after": 5.0}
        assert stock.calls == 4  # the refused call never left the client
        assert events == [("stock.peek", "closed", "open")]
        clock.advance(5.0)
        stock.error = None
        assert [await proxy.peek("a"), await proxy.peek("b")] == ["a", "b"]  # two probes
        assert events[-2:] == [("stock.peek", "open", "half_open"), ("stock.peek", "half_open", "closed")]
        assert p.snapshot()["breakers"] == {"stock.peek": "closed"}


async def test_application_errors_do_not_trip_the_breaker() -> None:
    stock = Stock()
    stock.error = StatusCode.NOT_FOUND
    p = client_policy(stock__peek=ClientRule(breaker=Breaker(min_calls=2)))
    async with Server([stock], middleware=[]) as server, Client(target=server.address, policy=p) as client:
        for _ in range(5):
            with pytest.raises(RpcError, match="on purpose"):
                await client.proxy(Stock).peek("x")
        assert stock.calls == 5


async def test_sre_throttle_rejects_locally_once_the_backend_refuses_most_calls() -> None:
    stock = Stock()
    stock.error = StatusCode.UNAVAILABLE
    rule = ClientRule(breaker=Breaker(kind="sre"), retry=Retry(max_attempts=1))
    p = client_policy(rng=random.Random(7), stock__peek=rule)
    async with Server([stock], middleware=[]) as server, Client(target=server.address, policy=p) as client:
        local = 0
        for _ in range(200):
            try:
                await client.proxy(Stock).peek("x")
            except RpcError as exc:
                local += exc.details == {"reason": "breaker_open", "retry_after": 0.0}
        assert local > 100  # most calls were refused without being sent
        assert stock.calls + local == 200


async def test_idempotent_calls_are_retried_and_unsafe_ones_are_not() -> None:
    stock = Stock()
    stock.fail_first = 2
    p = client_policy(**{"stock__*": ClientRule(retry=Retry(max_attempts=3))})
    async with Server([stock], middleware=[]) as server, Client(target=server.address, policy=p) as client:
        assert await client.proxy(Stock).flaky("x") == "x"
        assert stock.calls == 3 and p.retries == 2
        stock.calls = 0
        with pytest.raises(RpcError, match="after doing its work"):
            await client.proxy(Stock).unsafe("x")
        assert stock.calls == 1  # it reached the server: never sent again


async def test_retry_storm_is_bounded_by_the_budget() -> None:
    """A backend that fails everything receives at most (1 + budget) times the offered load."""
    stock = Stock()
    stock.fail_first = 10**9
    retry = Retry(max_attempts=5, budget_tokens=10, budget_ratio=0.1)
    p = client_policy(stock__flaky=ClientRule(retry=retry, breaker=Breaker(kind="off")))  # the budget alone
    offered = 300
    async with Server([stock], middleware=[]) as server, Client(target=server.address, policy=p) as client:
        for _ in range(offered):
            with pytest.raises(RpcError):
                await client.proxy(Stock).flaky("x")
    # Retries stop once the tokens fall to half: 10 tokens, 1 per failure -> 4 retries in all.
    assert stock.calls == offered + 4
    assert stock.calls <= offered * 1.1
    unbudgeted = offered * 5
    assert p.retries == 4 and stock.calls < unbudgeted / 4


async def test_a_retry_never_goes_past_the_deadline() -> None:
    class Ceiling(random.Random):
        def uniform(self, a: float, b: float) -> float:
            return b

    stock = Stock()
    stock.fail_first = 10**9
    sleep = FakeSleep()
    rule = ClientRule(retry=Retry(max_attempts=5, initial_backoff=0.05, max_backoff=1.0, multiplier=10))
    p = client_policy(sleep=sleep, rng=Ceiling(), stock__flaky=rule)
    async with serve(stock, middleware=[], client_policy=p) as (_, client):
        with pytest.raises(RpcError, match="flaky failed"):
            await client.proxy(Stock).with_options(timeout=0.3).flaky("x")
    # backoffs 0.05, then 0.5 would overrun the 0.3 s budget: the call fails instead of waiting
    assert sleep.delays == [0.05] and stock.calls == 2


async def test_retries_respect_the_servers_retry_after_hint() -> None:
    from meshkit.policy import ServerRule

    slept: list[float] = []

    async def sleep(delay: float) -> None:
        slept.append(delay)

    stock = Stock()
    server_clock = FakeClock()
    server_policy = Policy(
        PolicyConfig(shedding=NO_SHED, server={"stock.peek": ServerRule(limit=Limit(rate=2, burst=1))}),
        clock=server_clock,
        switches=Switches(),
    )
    p = client_policy(sleep=sleep, stock__peek=ClientRule(retry=Retry(max_attempts=2)))
    async with Server([stock], policy=server_policy, middleware=[]) as server:
        async with Client(target=server.address, policy=p) as client:
            await client.proxy(Stock).peek("a")
            with pytest.raises(RpcError) as err:
                await client.proxy(Stock).peek("b")  # refused, retried after 0.5 s (fake), refused again
    assert err.value.details["reason"] == "limit" and slept == [0.5]


async def test_hedging_answers_from_the_fast_instance() -> None:
    slow, fast = Stock(), Stock()
    slow.hang = asyncio.Event()
    rule = ClientRule(retry=Retry(max_attempts=2, hedge_after=0.02))
    p = client_policy(sleep=asyncio.sleep, stock__flaky=rule)
    async with Server([slow], middleware=[]) as a, Server([fast], middleware=[]) as b:
        target = f"{a.address},{b.address}"
        async with Client(target=target, policy=p, balancer="round_robin", timeout=5) as client:
            results = [await client.proxy(Stock).flaky(str(i)) for i in range(4)]
        slow.hang.set()
    assert results == ["0", "1", "2", "3"]
    assert fast.calls == 4 and slow.calls >= 1 and p.hedges == slow.calls


async def test_client_limit_refuses_locally() -> None:
    stock = Stock()
    p = client_policy(**{"stock__*": ClientRule(limit=Limit(rate=1, burst=1))})
    async with Server([stock], middleware=[]) as server, Client(target=server.address, policy=p) as client:
        await client.proxy(Stock).peek("a")
        with pytest.raises(RpcError, match="this client's rate limit") as err:
            await client.proxy(Stock).peek("b")
        assert err.value.details["reason"] == "client_limit" and stock.calls == 1


async def test_with_fallback_answers_when_refused_or_switched() -> None:
    switches = Switches()
    async with Server([Stock()], middleware=[]) as server:
        address = server.address
    # The server is gone: connection refused is UNAVAILABLE, not processed -> the fallback answers.
    async with Client(target=address, switches=switches, connect_timeout=0.5) as client:
        proxy = client.proxy(Stock).with_fallback(peek=lambda item: f"cached {item}")
        assert await proxy.peek("a") == "cached a"
        with pytest.raises(ValueError, match="has no method 'nope'"):
            client.proxy(Stock).with_fallback(nope=lambda: None)
    stock = Stock()
    async with Server([stock], middleware=[]) as server, Client(target=server.address, switches=switches) as client:

        async def later(item: str) -> str:
            return f"later {item}"

        proxy = client.proxy(Stock).with_fallback(peek=later)
        assert await proxy.peek("b") == "b"
        switches.set("stock.peek", True)
        assert await proxy.peek("c") == "later c" and stock.calls == 1
        stock.error = StatusCode.INVALID_ARGUMENT  # an answer, not a refusal: no fallback
        switches.set("stock.peek", False)
        with pytest.raises(RpcError, match="on purpose"):
            await proxy.peek("d")


async def test_policy_client_refuses_switched_methods_locally() -> None:
    p = client_policy()
    stock = Stock()
    async with Server([stock], middleware=[]) as server, Client(target=server.address, policy=p) as client:
        p.switches.set("stock.peek", True)
        with pytest.raises(RpcError, match="degraded by a switch in this process") as err:
            await client.proxy(Stock).peek("x")
        assert err.value.not_processed and stock.calls == 0


async def test_instance_breaker_takes_a_failing_instance_out() -> None:
    bad, good = Stock(), Stock()
    bad.error = StatusCode.INTERNAL
    rule = ClientRule(instance_breaker=Breaker(min_calls=3, error_ratio=0.5, open_for=60), retry=Retry(max_attempts=1))
    p = client_policy(**{"stock__*": rule})
    async with Server([bad], middleware=[]) as a, Server([good], middleware=[]) as b:
        async with Client(target=f"{a.address},{b.address}", policy=p, balancer="round_robin") as client:
            outcomes = []
            for _ in range(40):
                try:
                    outcomes.append(await client.proxy(Stock).peek("x"))
                except RpcError:
                    outcomes.append("error")
    assert bad.calls == 3  # its breaker opened after 3 failures; nothing more was sent there
    assert outcomes[-20:] == ["x"] * 20
    assert p.events.states[f"*@{a.address}"] == "open"
