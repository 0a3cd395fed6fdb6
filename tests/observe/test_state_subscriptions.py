"""The scrape-time figures (pools, breakers, policy counters) come from what the collector was
told by the client and policy rosters: a client is reported from its opening to its close(), a
policy until it is collected, and neither is kept alive by being reported."""

from __future__ import annotations

import gc
import weakref

from prometheus_client import CollectorRegistry

from meshkit import Client, Server
from meshkit.observe import RpcMetrics
from meshkit.policy import Breaker, ClientRule, Policy, PolicyConfig, Retry, Shedding, Switches
from tests.policy.services import Stock


async def no_sleep(_: float) -> None:
    return None


def watched_policy() -> Policy:
    rule = ClientRule(
        breaker=Breaker(min_calls=100), instance_breaker=Breaker(min_calls=100), retry=Retry(max_attempts=2)
    )
    config = PolicyConfig(shedding=Shedding(enabled=False), client={"stock.*": rule})
    return Policy(config, sleep=no_sleep, switches=Switches())


def retries(registry: CollectorRegistry) -> float | None:
    return registry.get_sample_value("meshkit_policy_actions_total", {"action": "retry"})


def figures(registry: CollectorRegistry, address: str) -> tuple[float | None, float | None, float | None]:
    """This client's connections, its per-instance breaker and its method breaker."""
    return (
        registry.get_sample_value("meshkit_client_connections", {"service": address}),
        registry.get_sample_value("meshkit_breaker_state", {"name": f"*@{address}"}),
        registry.get_sample_value("meshkit_breaker_state", {"name": "stock.peek"}),
    )


async def test_a_clients_pool_is_reported_while_open_and_not_after_close() -> None:
    registry = CollectorRegistry()
    RpcMetrics(registry)
    async with Server([Stock()], middleware=[]) as server:
        client = Client(target=server.address, middleware=[], policy=watched_policy())
        await client.proxy(Stock).peek("a")
        connections, instance_breaker, method_breaker = figures(registry, server.address)
        assert connections == 1 and instance_breaker == 0 and method_breaker == 0
        await client.close()
        assert figures(registry, server.address)[0] is None


async def test_a_policys_breakers_go_when_it_is_collected_and_its_counts_stay() -> None:
    """Breakers belong to the policy, which has no close: it is reported until nothing uses
    it, and what it did stays in the process totals (a counter never goes down)."""
    registry = CollectorRegistry()
    RpcMetrics(registry)
    stock = Stock()
    stock.fail_first = 2  # peek is the first call; flaky fails once, then the retry succeeds
    async with Server([stock], middleware=[]) as server:
        policy = watched_policy()
        async with Client(target=server.address, middleware=[], policy=policy) as client:
            await client.proxy(Stock).peek("a")
            before = retries(registry) or 0.0
            assert await client.proxy(Stock).flaky("b") == "b"  # failed once, retried
        assert retries(registry) == before + 1
        assert figures(registry, server.address)[1:] == (0, 0)
        gone = weakref.ref(policy)
        del policy, client
        gc.collect()
        assert gone() is None
        assert figures(registry, server.address) == (None, None, None)
        assert retries(registry) == before + 1


async def test_a_collector_made_later_is_told_of_the_clients_already_open() -> None:
    """``meshkit run`` makes its services (and their clients) before the metrics."""
    async with Server([Stock()], middleware=[]) as server:
        async with Client(target=server.address, middleware=[]) as client:
            await client.proxy(Stock).peek("a")
            registry = CollectorRegistry()
            RpcMetrics(registry)
            assert figures(registry, server.address)[0] == 1


async def test_being_reported_keeps_no_client_alive() -> None:
    registry = CollectorRegistry()
    RpcMetrics(registry)
    async with Server([Stock()], middleware=[]) as server:
        closed = Client(target=server.address, middleware=[])
        await closed.proxy(Stock).peek("a")
        await closed.close()
        gone = weakref.ref(closed)
        del closed
        gc.collect()
        assert gone() is None
        dropped = Client(target=server.address, middleware=[])  # never called, never closed
        assert figures(registry, server.address)[0] == 0
        gone = weakref.ref(dropped)
        del dropped
        gc.collect()
        assert gone() is None
        assert figures(registry, server.address)[0] is None
