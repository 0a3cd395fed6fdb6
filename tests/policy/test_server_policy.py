"""Server-side policies through a real server: limits, bulkheads, shedding, fallbacks, switches."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from meshkit import Client, RpcError, Server, StatusCode
from meshkit.policy import Limit, Policy, PolicyConfig, PolicyError, ServerRule, Shedding, Switches
from meshkit.testing import FakeClock
from tests.policy.services import Stock

NO_SHED = Shedding(enabled=False)


def policy(clock: FakeClock | None = None, **rules: ServerRule) -> Policy:
    config = PolicyConfig(shedding=NO_SHED, server={k.replace("__", "."): v for k, v in rules.items()})
    return Policy(config, clock=clock or FakeClock(), switches=Switches())


async def test_method_limit_refuses_without_running_the_handler_and_says_when_to_retry() -> None:
    clock = FakeClock()
    stock = Stock()
    p = policy(clock, stock__peek=ServerRule(limit=Limit(rate=1, burst=2)))
    async with Server([stock], policy=p, middleware=[]) as server, Client(target=server.address) as client:
        proxy = client.proxy(Stock)
        assert [await proxy.peek("a"), await proxy.peek("b")] == ["a", "b"]
        with pytest.raises(RpcError) as err:
            await proxy.peek("c")
        assert err.value.code is StatusCode.RESOURCE_EXHAUSTED and err.value.not_processed
        assert err.value.details == {"reason": "limit", "retry_after": 1.0}
        assert "stock.peek" in err.value.message and "retry after 1.000s" in err.value.message
        assert stock.calls == 2  # the refused call never reached the handler
        clock.advance(1.0)
        assert await proxy.peek("d") == "d"
        assert p.rejected["limit"] == 1


async def test_a_refused_method_with_a_fallback_answers_with_it() -> None:
    stock = Stock()
    p = policy(stock__reserve=ServerRule(limit=Limit(rate=1, burst=1)))
    async with Server([stock], policy=p, middleware=[]) as server, Client(target=server.address) as client:
        proxy = client.proxy(Stock)
        assert await proxy.reserve("a") == "reserved a"
        assert await proxy.reserve("b") == "deferred b"
        assert stock.calls == 1 and p.degraded == 1


async def test_caller_limits_are_per_caller() -> None:
    p = policy(**{"stock__*": ServerRule(caller_limit=Limit(rate=1, burst=1))})
    async with Server([Stock()], policy=p, middleware=[]) as server:
        async with Client(target=server.address, caller="a") as a, Client(target=server.address, caller="b") as b:
            assert await a.proxy(Stock).peek("x") == "x"
            assert await b.proxy(Stock).peek("x") == "x"  # b has its own bucket
            with pytest.raises(RpcError, match="rate limit of caller 'a'") as err:
                await a.proxy(Stock).peek("x")
            assert err.value.details["reason"] == "caller_limit"


async def test_bulkhead_refuses_at_once_when_full() -> None:
    stock = Stock()
    stock.gate = asyncio.Event()
    p = policy(stock__peek=ServerRule(max_concurrency=2))
    async with Server([stock], policy=p, middleware=[]) as server, Client(target=server.address) as client:
        proxy = client.proxy(Stock)
        held = [asyncio.create_task(proxy.peek(str(i))) for i in range(2)]
        while stock.calls < 2:
            await asyncio.sleep(0.001)
        with pytest.raises(RpcError) as err:
            await proxy.peek("third")
        assert err.value.code is StatusCode.RESOURCE_EXHAUSTED and err.value.details["reason"] == "bulkhead"
        assert await proxy.flaky("other methods are not affected") == "other methods are not affected"
        stock.gate.set()
        assert await asyncio.gather(*held) == ["0", "1"]
        assert await proxy.peek("after") == "after"  # slots were given back


async def test_shedder_refuses_at_once_past_its_limit_before_decoding() -> None:
    stock = Stock()
    stock.gate = asyncio.Event()
    p = Policy(PolicyConfig(shedding=Shedding(initial_limit=2, min_limit=2)), switches=Switches())
    async with Server([stock], policy=p, middleware=[]) as server, Client(target=server.address) as client:
        proxy = client.proxy(Stock)
        held = [asyncio.create_task(proxy.peek(str(i))) for i in range(2)]
        while stock.calls < 2:
            await asyncio.sleep(0.001)
        # Refused on the server's fast path: even arguments that would not decode are not looked at.
        with pytest.raises(RpcError) as err:
            await client.call("stock", "peek", {"item": 12345})
        assert err.value.code is StatusCode.RESOURCE_EXHAUSTED and err.value.details["reason"] == "shed"
        assert p.shedder is not None and p.shedder.rejected == 1 and p.rejected["shed"] == 1
        stock.gate.set()
        await asyncio.gather(*held)
        with pytest.raises(RpcError) as bad:
            await client.call("stock", "peek", {"item": 12345})
        assert bad.value.code is StatusCode.INVALID_ARGUMENT  # with room again, the same call is decoded


async def test_shedder_queues_a_few_and_refuses_the_rest_past_its_limit() -> None:
    stock = Stock()
    stock.gate = asyncio.Event()
    config = PolicyConfig(shedding=Shedding(initial_limit=2, min_limit=2, queue_share=0.5))
    p = Policy(config, switches=Switches())
    async with Server([stock], policy=p, middleware=[]) as server, Client(target=server.address) as client:
        proxy = client.proxy(Stock)
        held = [asyncio.create_task(proxy.peek(str(i))) for i in range(2)]
        while stock.calls < 2:
            await asyncio.sleep(0.001)
        waiting = asyncio.create_task(proxy.peek("queued"))  # one may wait (half the limit)
        while p.shedder is not None and p.shedder.queued < 1:
            await asyncio.sleep(0.001)
        with pytest.raises(RpcError) as err:
            await proxy.peek("refused")
        assert err.value.details["reason"] == "shed" and err.value.not_processed
        assert "server overloaded" in err.value.message
        assert await proxy.reserve("x") == "deferred x"  # shed, but it has a fallback
        assert stock.calls == 2
        stock.gate.set()
        assert await asyncio.gather(*held, waiting) == ["0", "1", "queued"]
        assert p.shedder is not None and p.shedder.in_flight == 0 and p.shedder.queued == 0
        assert p.snapshot()["rejected"] == {"shed": 2}


async def test_a_call_cancelled_while_queued_gives_its_place_back() -> None:
    stock = Stock()
    stock.gate = asyncio.Event()
    config = PolicyConfig(shedding=Shedding(initial_limit=2, min_limit=2, queue_share=0.5))
    p = Policy(config, switches=Switches())
    async with Server([stock], policy=p, middleware=[]) as server, Client(target=server.address) as client:
        proxy = client.proxy(Stock)
        held = [asyncio.create_task(proxy.peek(str(i))) for i in range(2)]
        while stock.calls < 2:
            await asyncio.sleep(0.001)
        with pytest.raises(RpcError) as err:
            await proxy.with_options(timeout=0.05).peek("gives up")  # queued, then its deadline passes
        assert err.value.code is StatusCode.DEADLINE_EXCEEDED
        assert p.shedder is not None
        while p.shedder.queued:
            await asyncio.sleep(0.001)
        stock.gate.set()
        await asyncio.gather(*held)
        assert await proxy.peek("next") == "next"
        assert p.shedder.in_flight == 0 and stock.calls == 3


async def test_switches_turn_a_method_into_its_fallback_live() -> None:
    switches = Switches()
    stock = Stock()
    token = {"authorization": "Bearer s3cret"}
    async with (
        Server([stock], switches=switches, admin=True, admin_token="s3cret") as server,
        Client(target=server.address, metadata=token) as client,
    ):
        proxy = client.proxy(Stock)
        admin = {"name": "stock.reserve", "on": True}
        answer = await client.call("meshkit-admin", "switch", admin)
        assert answer == {"switches": {"stock.reserve": True}, "served_here": True, "has_fallback": True}
        assert await proxy.reserve("a") == "deferred a" and stock.calls == 0
        await client.call("meshkit-admin", "switch", {"name": "stock.peek", "on": True})
        with pytest.raises(RpcError, match="degraded by a switch on this server and has no fallback") as err:
            await proxy.peek("a")
        assert err.value.code is StatusCode.UNAVAILABLE and err.value.not_processed
        await client.call("meshkit-admin", "switch", {"name": "stock.reserve", "on": False})
        switches.set("stock.peek", False)
        assert [await proxy.reserve("b"), await proxy.peek("c")] == ["reserved b", "c"]
        with pytest.raises(RpcError) as bad:
            await client.call("meshkit-admin", "switch", {"name": "stock", "on": True})
        assert bad.value.code is StatusCode.INVALID_ARGUMENT
        assert (await client.call("meshkit-admin", "status"))["switches"] == {}


async def test_the_admin_service_is_off_by_default_and_can_require_a_token() -> None:
    async with Server([Stock()], switches=Switches()) as server, Client(target=server.address) as client:
        with pytest.raises(RpcError) as off:
            await client.call("meshkit-admin", "status")
        assert off.value.code is StatusCode.UNIMPLEMENTED
    async with Server([Stock()], switches=Switches(), admin=True, admin_token="s3cret") as server:
        async with Client(target=server.address) as anonymous:
            with pytest.raises(RpcError) as denied:
                await anonymous.call("meshkit-admin", "switch", {"name": "stock.peek", "on": True})
            assert denied.value.code is StatusCode.UNAUTHENTICATED
            assert "stock.peek" not in server.switches
        wrong = {"authorization": "Bearer guess"}
        async with Client(target=server.address, metadata=wrong) as guesser:
            with pytest.raises(RpcError, match="needs 'authorization: Bearer TOKEN'"):
                await guesser.call("meshkit-admin", "switch", {"name": "stock.peek", "on": True})
            assert (await guesser.call("meshkit-admin", "status"))["switches"] == {}  # reads stay open
        async with Client(target=server.address, metadata={"authorization": "Bearer s3cret"}) as operator:
            await operator.call("meshkit-admin", "switch", {"name": "stock.peek", "on": True})
            assert "stock.peek" in server.switches


async def test_switches_set_before_start_apply_from_the_first_call() -> None:
    switches = Switches(["stock.reserve"])
    async with Server([Stock()], switches=switches) as server, Client(target=server.address) as client:
        assert await client.proxy(Stock).reserve("a") == "deferred a"


async def test_policy_from_a_toml_file(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text('[shedding]\nenabled = false\n[server."stock.peek"]\nlimit = { rate = 1, burst = 1 }\n')
    async with Server([Stock()], policy=str(path), switches=Switches()) as server:
        async with Client(target=server.address) as client:
            await client.proxy(Stock).peek("a")
            with pytest.raises(RpcError, match="rate limit reached"):
                await client.proxy(Stock).peek("b")
    path.write_text('[server."stock.peek"]\nlimit = { rat = 1 }\n')
    with pytest.raises(PolicyError, match=r"policy.toml: .*unknown field `rat`"):
        Server([Stock()], policy=str(path))
    with pytest.raises(PolicyError, match="cannot read policy file"):
        Policy.from_file(tmp_path / "missing.toml")


def test_code_overrides_merge_over_the_file(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text('[server."stock.*"]\nlimit = { rate = 100, burst = 10 }\nmax_concurrency = 5\n')
    p = Policy.from_file(path, {"server": {"stock.*": {"limit": {"burst": 2}}}}, switches=Switches())
    rule = p.config.server["stock.*"]
    assert rule.limit is not None and (rule.limit.rate, rule.limit.burst) == (100, 2) and rule.max_concurrency == 5
    with pytest.raises(PolicyError, match="with overrides"):
        Policy.from_file(path, {"server": {"stock.*": {"max_concurrency": 0}}})


def test_policy_defaults_are_the_pure_algorithms_defaults() -> None:
    """The TOML schema repeats the settings of the pure configs: their defaults must not drift."""
    import dataclasses

    from meshkit.policy import Breaker
    from meshkit.policy.client import breaker_config
    from meshkit.resilience.breaker import BreakerConfig
    from meshkit.resilience.shedder import ShedderConfig

    assert Shedding().shedder_config() == ShedderConfig()
    assert breaker_config(Breaker()) == BreakerConfig()
    shared = {f.name for f in dataclasses.fields(ShedderConfig)} & set(Shedding.__struct_fields__)
    assert len(shared) >= 10  # the mapping is by name: a rename on one side shows up here


def test_a_fallback_must_name_a_method() -> None:
    from meshkit import Service, rpc
    from meshkit.rpc.service import method_specs

    class Bad(Service, name="bad"):
        @rpc(fallback="nope")
        async def m(self) -> None: ...

    with pytest.raises(TypeError, match="fallback 'nope' is not a method of Bad"):
        method_specs(Bad)


async def test_an_admin_service_without_a_token_refuses_every_change() -> None:
    async with Server([Stock()], switches=Switches(), admin=True) as server, Client(target=server.address) as client:
        with pytest.raises(RpcError) as refused:
            await client.call("meshkit-admin", "switch", {"name": "stock.peek", "on": True})
        assert refused.value.code is StatusCode.PERMISSION_DENIED and "--admin-token" in refused.value.message
        assert "stock.peek" not in server.switches
        assert (await client.call("meshkit-admin", "status"))["switches"] == {}
