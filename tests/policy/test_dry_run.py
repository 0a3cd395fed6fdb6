"""Dry-run rules (``mode = "dry-run"``): evaluated on real traffic, refusing nothing, counting
exactly what enforce would refuse on the same traffic (a fake clock makes the traffic the same)."""

from __future__ import annotations

import contextlib

import pytest

from meshkit import Client, RpcError, Server, StatusCode
from meshkit.policy import Breaker, ClientRule, Limit, Policy, PolicyConfig, ServerRule, Shedding, Switches
from meshkit.policy.config import parse
from meshkit.testing import FakeClock
from tests.policy.calls import Script, fake_call
from tests.policy.calls import policy as client_policy
from tests.policy.services import Stock

NO_SHED = Shedding(enabled=False)
#: The traffic: a call every 50 ms for 3 s, with bursts of 5 at once every half second.
STEPS = [0.05] * 60


async def run_traffic(mode: str | None) -> tuple[int, int, Policy]:
    clock = FakeClock()
    rule = ServerRule(limit=Limit(rate=10, burst=3), caller_limit=Limit(rate=15, burst=4), mode=mode)  # type: ignore[arg-type]
    p = Policy(PolicyConfig(shedding=NO_SHED, server={"stock.*": rule}), clock=clock, switches=Switches())
    refused = served = 0
    async with Server([Stock()], policy=p, middleware=[]) as server, Client(target=server.address) as client:
        proxy = client.proxy(Stock)
        for i, step in enumerate(STEPS):
            clock.advance(step)
            for _ in range(5 if i % 10 == 0 else 1):
                try:
                    await proxy.peek("x")
                    served += 1
                except RpcError as exc:
                    assert exc.code is StatusCode.RESOURCE_EXHAUSTED
                    refused += 1
    return served, refused, p


async def test_dry_run_refuses_nothing_and_counts_what_enforce_refuses() -> None:
    served, refused, enforced = await run_traffic("enforce")
    assert refused > 0  # the traffic does go over the limits
    dry_served, dry_refused, dry = await run_traffic("dry-run")
    assert dry_refused == 0 and dry_served == served + refused
    would = sum(dry.would_refuse.values())
    assert would == refused == sum(enforced.rejected.values())
    assert {rule for rule, _ in dry.would_refuse} == {"server:stock.peek"}
    assert sum(dry.rejected.values()) == 0


async def test_a_dry_run_bulkhead_lets_calls_in_and_its_count_balances() -> None:
    import asyncio

    p = Policy(
        PolicyConfig(shedding=NO_SHED, server={"stock.peek": ServerRule(max_concurrency=1, mode="dry-run")}),
        switches=Switches(),
    )
    stock = Stock()
    async with Server([stock], policy=p, middleware=[]) as server, Client(target=server.address) as client:
        proxy = client.proxy(Stock)
        stock.gate = asyncio.Event()
        calls = [asyncio.ensure_future(proxy.peek("x")) for _ in range(3)]
        async with asyncio.timeout(5):
            while stock.calls < 3:
                await asyncio.sleep(0.001)
        stock.gate.set()
        assert await asyncio.gather(*calls) == ["x"] * 3
    assert p.would_refuse[("server:stock.peek", "bulkhead")] == 2


async def test_a_dry_run_client_limit_counts_each_call_once_and_sends_it() -> None:
    rule = ClientRule(
        limit=Limit(rate=1, burst=1),
        breaker=Breaker(min_calls=2, window=10, error_ratio=0.5, open_for=5),
        mode="dry-run",
    )
    p, _, _ = client_policy(stock__peek=rule)
    terminal = Script([RpcError(StatusCode.UNAVAILABLE, "down")] * 2 + ["ok"] * 3)
    handler = p.client_middleware()(terminal)
    for _ in range(5):
        with contextlib.suppress(RpcError):
            await handler(fake_call("stock.peek"))
    assert len(terminal.calls) == 5  # nothing refused
    # enforce: calls 2-5 refused by the bucket, never reaching the breaker (which saw one call)
    assert dict(p.would_refuse) == {("client:stock.peek", "client_limit"): 4}
    assert not p._shadowed  # forgotten once each call ended


async def test_a_dry_run_breaker_counts_a_call_once_however_often_it_is_retried() -> None:
    rule = ClientRule(breaker=Breaker(min_calls=2, window=10, error_ratio=0.5, open_for=5), mode="dry-run")
    enforce = ClientRule(breaker=Breaker(min_calls=2, window=10, error_ratio=0.5, open_for=5))
    outcomes = [RpcError(StatusCode.UNAVAILABLE, "down")] * 12
    p, _, _ = client_policy(stock__flaky=rule)
    e, _, _ = client_policy(stock__flaky=enforce)
    dry_terminal, enforce_terminal = Script(list(outcomes)), Script(list(outcomes))
    dry, enforced = p.client_middleware()(dry_terminal), e.client_middleware()(enforce_terminal)
    refused = 0
    for _ in range(4):
        with contextlib.suppress(RpcError):
            await dry(fake_call("stock.flaky", idempotent=True))
        try:
            await enforced(fake_call("stock.flaky", idempotent=True))
        except RpcError as exc:
            refused += exc.details is not None and exc.details.get("reason") == "breaker_open"
    assert refused > 0
    assert sum(p.would_refuse.values()) == refused == p.would_refuse[("client:stock.flaky", "breaker_open")]
    assert len(dry_terminal.calls) > len(enforce_terminal.calls)  # dry run sent what enforce refused


def test_mode_is_read_from_the_file_and_a_method_rule_can_enforce_under_a_dry_run_service_rule() -> None:
    config = parse(
        b'[server."stock.*"]\nmode = "dry-run"\nlimit = { rate = 5 }\n[server."stock.peek"]\nmode = "enforce"\n'
    )
    from meshkit.policy.config import resolve

    assert resolve(config.server, "stock.take", ServerRule).dry_run
    assert not resolve(config.server, "stock.peek", ServerRule).dry_run


def test_an_unknown_mode_names_the_field() -> None:
    from meshkit.policy import PolicyError

    with pytest.raises(PolicyError, match=r"mode"):
        parse(b'[server."stock.*"]\nmode = "shadow"\n', "p.toml")


async def test_the_shedder_still_sheds_calls_a_dry_run_limit_lets_through() -> None:
    import asyncio

    shedding = Shedding(initial_limit=2, min_limit=2, max_limit=2)
    rule = ServerRule(limit=Limit(rate=1, burst=1), mode="dry-run")
    p = Policy(PolicyConfig(shedding=shedding, server={"stock.peek": rule}), switches=Switches())
    stock = Stock()
    stock.gate = asyncio.Event()
    async with Server([stock], policy=p, middleware=[]) as server, Client(target=server.address) as client:
        calls = [asyncio.ensure_future(client.proxy(Stock).peek("x")) for _ in range(6)]
        done = await asyncio.gather(*calls[2:], return_exceptions=True)  # four beyond the two slots
        stock.gate.set()
        assert await asyncio.gather(*calls[:2]) == ["x", "x"]
    assert all(isinstance(r, RpcError) and r.details["reason"] == "shed" for r in done), done
    assert stock.calls == 2
