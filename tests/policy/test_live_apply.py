"""``Policy.apply``: a new config runs from the next call, without a restart; the state of rules
that did not change is kept; switches change only where the config changes them."""

from __future__ import annotations

import pytest

from meshkit import Client, RpcError, Server, StatusCode
from meshkit.policy import Breaker, ClientRule, Limit, Policy, PolicyConfig, PolicyError, ServerRule, Shedding, Switches
from meshkit.policy.config import parse
from meshkit.testing import FakeClock
from tests.policy.calls import Script, fake_call
from tests.policy.calls import policy as client_policy
from tests.policy.services import Stock

NO_SHED = Shedding(enabled=False)


def server_config(**rules: ServerRule) -> PolicyConfig:
    return PolicyConfig(shedding=NO_SHED, server={k.replace("__", "."): v for k, v in rules.items()})


async def admitted(proxy: object, n: int) -> int:
    ok = 0
    for i in range(n):
        try:
            await proxy.peek(str(i))  # type: ignore[attr-defined]
        except RpcError:
            continue
        ok += 1
    return ok


async def test_a_new_server_limit_applies_at_the_next_call_and_an_unchanged_one_keeps_its_tokens() -> None:
    clock = FakeClock()
    p = Policy(
        server_config(
            stock__peek=ServerRule(limit=Limit(rate=1, burst=2)),
            stock__reserve=ServerRule(limit=Limit(rate=1, burst=1)),
        ),
        clock=clock,
        switches=Switches(),
    )
    async with Server([Stock()], policy=p, middleware=[]) as server, Client(target=server.address) as client:
        proxy = client.proxy(Stock)
        assert await admitted(proxy, 3) == 2
        assert await proxy.reserve("a") == "reserved a"  # reserve's one token is spent
        changed = p.apply(
            server_config(
                stock__peek=ServerRule(limit=Limit(rate=1, burst=5)),
                stock__reserve=ServerRule(limit=Limit(rate=1, burst=1)),
            ),
            revision=7,
        )
        assert changed == ["server:stock.peek"]
        assert p.revision == 7
        assert await admitted(proxy, 6) == 5  # the new burst, a fresh bucket
        assert await proxy.reserve("b") == "deferred b"  # unchanged rule: its bucket is still empty


async def test_removing_a_limit_lifts_it() -> None:
    p = Policy(
        server_config(stock__peek=ServerRule(limit=Limit(rate=1, burst=1))), clock=FakeClock(), switches=Switches()
    )
    async with Server([Stock()], policy=p, middleware=[]) as server, Client(target=server.address) as client:
        proxy = client.proxy(Stock)
        assert await admitted(proxy, 3) == 1
        p.apply(server_config())
        assert await admitted(proxy, 3) == 3


async def test_a_client_rule_change_rebuilds_that_methods_chain_only() -> None:
    p, _, _ = client_policy(
        stock__peek=ClientRule(limit=Limit(rate=1, burst=1)), stock__take=ClientRule(limit=Limit(rate=1, burst=1))
    )
    terminal = Script([])
    handler = p.client_middleware()(terminal)
    await handler(fake_call("stock.peek"))
    await handler(fake_call("stock.take"))
    with pytest.raises(RpcError):
        handler(fake_call("stock.peek"))
    p.apply(
        PolicyConfig(
            shedding=NO_SHED,
            client={
                "stock.peek": ClientRule(limit=Limit(rate=1, burst=3)),
                "stock.take": ClientRule(limit=Limit(rate=1, burst=1)),
            },
        )
    )
    for _ in range(3):
        await handler(fake_call("stock.peek"))
    with pytest.raises(RpcError):
        handler(fake_call("stock.take"))  # its bucket kept: still empty


async def test_an_open_breaker_stays_open_when_its_rule_does_not_change() -> None:
    rule = ClientRule(breaker=Breaker(min_calls=2, window=10, error_ratio=0.5, open_for=5))
    p, _, _ = client_policy(stock__peek=rule)

    failing = Script([RpcError(StatusCode.UNAVAILABLE, "down")] * 2)
    handler = p.client_middleware()(failing)
    for _ in range(2):
        with pytest.raises(RpcError):
            await handler(fake_call("stock.peek", idempotent=False))
    assert p.events.states["stock.peek"] == "open"
    p.apply(PolicyConfig(shedding=NO_SHED, client={"stock.peek": rule}, switches={"stock.other": True}))
    with pytest.raises(RpcError, match="circuit breaker"):
        await handler(fake_call("stock.peek"))


def test_switches_change_only_where_the_config_changes_them() -> None:
    p = Policy(PolicyConfig(shedding=NO_SHED, switches={"stock.a": True}), switches=Switches())
    p.switches.set("stock.b", True)  # flipped live by an operator
    changed = p.apply(PolicyConfig(shedding=NO_SHED, switches={"stock.a": True, "stock.c": True}))
    assert changed == ["switch:stock.c"]
    assert p.switches.on >= {"stock.a", "stock.b", "stock.c"}
    p.apply(PolicyConfig(shedding=NO_SHED, switches={"stock.c": True}))
    assert "stock.a" not in p.switches.on and "stock.b" in p.switches.on


def test_a_config_this_process_cannot_run_is_refused_and_nothing_changes() -> None:
    p = Policy(server_config(), switches=Switches())
    shared = parse(b'[server."stock.peek".limit]\nrate = 5\nshared = true\n')
    with pytest.raises(PolicyError, match="no redis URL"):
        p.apply(shared, revision=3)
    assert p.config == server_config() and p.revision is None


async def test_shedding_settings_change_live_and_keep_the_learnt_limit_in_bounds() -> None:
    p = Policy(PolicyConfig(shedding=Shedding(initial_limit=50, max_limit=100)), switches=Switches())
    assert p.shedder is not None
    shedder = p.shedder
    changed = p.apply(PolicyConfig(shedding=Shedding(initial_limit=10, max_limit=20)))
    assert changed == ["shedding"] and p.shedder is shedder and shedder.limit == 20
    p.apply(PolicyConfig(shedding=Shedding(enabled=False)))
    assert p.shedder is None
    p.apply(PolicyConfig())
    assert p.shedder is not None


async def test_a_shedding_edit_keeps_the_other_rules_state() -> None:
    rule = ServerRule(limit=Limit(rate=1, burst=2))
    p = Policy(
        PolicyConfig(shedding=Shedding(max_limit=100), server={"stock.peek": rule}),
        clock=FakeClock(),
        switches=Switches(),
    )
    async with Server([Stock()], policy=p, middleware=[]) as server, Client(target=server.address) as client:
        proxy = client.proxy(Stock)
        assert await admitted(proxy, 3) == 2
        assert p.apply(PolicyConfig(shedding=Shedding(max_limit=50), server={"stock.peek": rule})) == ["shedding"]
        assert await admitted(proxy, 2) == 0, "the spent bucket was kept"


def test_a_redis_url_that_does_not_parse_is_refused_and_nothing_changes() -> None:
    p = Policy(server_config(stock__peek=ServerRule(limit=Limit(rate=5))), switches=Switches())
    before = p.config
    bad = parse(b'redis = "http://nope"\n[server."stock.peek".limit]\nrate = 5\nshared = true\n')
    with pytest.raises(PolicyError, match="not a Redis URL"):
        p.apply(bad, revision=9)
    assert p.config is before and p.revision is None and p._redis_link is None


async def test_a_changed_retry_rule_gives_every_method_of_its_service_the_new_budget() -> None:
    from meshkit.policy import Retry

    p, _, _ = client_policy(**{"stock__*": ClientRule(retry=Retry(budget_tokens=10))})
    handler = p.client_middleware()(Script([]))
    for method in ("stock.peek", "stock.take"):
        await handler(fake_call(method))
    old = p._budgets["stock"]
    p.apply(
        PolicyConfig(
            shedding=NO_SHED,
            client={
                "stock.*": ClientRule(retry=Retry(budget_tokens=10)),
                "stock.peek": ClientRule(retry=Retry(budget_tokens=3)),
            },
        )
    )
    for method in ("stock.peek", "stock.take"):
        await handler(fake_call(method))
    assert p._budgets["stock"] is not old
    stages = next(iter(p._client_stages))
    assert set(stages) == {"stock.peek", "stock.take"}  # both rebuilt on the one new budget


async def test_instance_breakers_follow_a_new_config_on_a_running_client() -> None:
    p = Policy(PolicyConfig(shedding=NO_SHED), switches=Switches())
    async with Server([Stock()], middleware=[]) as server:
        client = Client(target=server.address, policy=p, middleware=[])
        try:
            eps = client.channel.static
            assert eps is not None and eps.breakers == {}
            with_breakers = PolicyConfig(shedding=NO_SHED, client={"*": ClientRule(instance_breaker=Breaker())})
            assert "instance_breakers" in p.apply(with_breakers)
            assert set(eps.breakers) == {server.address}  # made for the running client's instance
            breaker = eps.breakers[server.address]
            p.apply(with_breakers)  # unchanged: the breakers (and their state) stay
            assert eps.breakers[server.address] is breaker
            p.apply(PolicyConfig(shedding=NO_SHED))
            assert eps.breakers == {}
        finally:
            await client.close()


async def test_shedding_turned_on_live_reaches_the_servers_refusal_before_decoding() -> None:
    p = Policy(PolicyConfig(shedding=NO_SHED), switches=Switches())
    async with Server([Stock()], policy=p, middleware=[]) as server:
        assert server._dispatcher.shedder is None
        p.apply(PolicyConfig())
        assert server._dispatcher.shedder is p.shedder is not None
        p.apply(PolicyConfig(shedding=NO_SHED))
        assert server._dispatcher.shedder is None
