"""Partitions, then heal: between the client and one instance (shorter and longer than the
breaker's open time), and between the client and the registry (shorter and longer than the lease
TTL). No call runs past its deadline, calls fail over to what is reachable, the client keeps the
endpoints it knows, and service is full again after the heal."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from meshkit import Client, RpcError, Server
from meshkit.policy import Breaker, ClientRule, Policy, PolicyConfig, Shedding
from meshkit.protocol.keepalive import KeepaliveConfig
from meshkit.rpc.middleware import Call, Handler
from meshkit.testing import FaultProxy, registry_process, service_process
from tests.faults.conftest import ROOT, Reliability, until
from tests.rpc.services import Greeter

KEEPALIVE = KeepaliveConfig(interval=0.2, timeout=0.2)
TIMEOUT = 1.0
POLICY = PolicyConfig(
    shedding=Shedding(enabled=False),
    client={"*": ClientRule(instance_breaker=Breaker(window=2.0, min_calls=3, error_ratio=0.5, open_for=1.0))},
)


@pytest.mark.parametrize("seconds", [0.5, 3.0], ids=["short", "long"])
async def test_a_partition_from_one_instance_fails_over_and_heals(seconds: float, reliability: Reliability) -> None:
    loop = asyncio.get_running_loop()
    log: list[tuple[float, float, str, str]] = []  # start, end, peer, outcome

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
            client = Client(
                target=f"{a.address},{proxy.address}",
                middleware=[recording],
                keepalive=KEEPALIVE,
                timeout=TIMEOUT,
                policy=Policy(POLICY),
            )
            async with client:
                greeter = client.proxy(Greeter)
                stop = asyncio.Event()

                async def worker() -> None:
                    while not stop.is_set():
                        try:
                            await greeter.sleep(0.005)
                        except RpcError:
                            await asyncio.sleep(0.005)  # pacing after a failure, not for correctness

                workers = [asyncio.create_task(worker()) for _ in range(8)]
                await until(lambda: sum(1 for *_, p, o in log if p == proxy.address and o == "OK") >= 20)
                cut = loop.time()
                proxy.partition()
                await asyncio.sleep(seconds)  # the partition lasts this long (the scenario's input)
                healed = loop.time()
                proxy.heal()
                await until(lambda: any(s > healed and p == proxy.address and o == "OK" for s, _, p, o in log))
                back = min(e for s, e, p, o in log if s > healed and p == proxy.address and o == "OK") - healed
                stop.set()
                await asyncio.gather(*workers)
    overrun = max(e - s for s, e, *_ in log) - TIMEOUT
    during = [(p, o) for s, e, p, o in log if cut < s < healed]
    served_during = sum(1 for p, o in during if o == "OK")
    failed = [o for s, e, p, o in log if o != "OK"]
    reliability.record(
        f"partition client-instance ({'shorter' if seconds < 1 else 'longer'} than the breaker's 1 s)",
        f"1 of 2 instances cut off for {seconds:g} s (bytes held both ways), 8 callers, 1 s deadlines",
        "no call past its deadline; calls fail over; full service after heal",
        f"longest call {max(e - s for s, e, *_ in log) * 1000:.0f} ms; served during the partition "
        f"{served_during} of {len(during)}; failed calls {len(failed)}; the cut instance serves again "
        f"{back:.2f} s after heal",
    )
    assert overrun <= 0.25  # deadlines enforced (the slack is the event loop's timer granularity)
    assert served_during > 0 and served_during >= len(during) // 2


@pytest.mark.parametrize("seconds", [1.0, 4.0], ids=["shorter-than-ttl", "longer-than-ttl"])
async def test_a_partition_from_the_registry_drops_no_endpoint(seconds: float, reliability: Reliability) -> None:
    """The instances keep their leases (they reach the registry); only the client is cut off from
    it. Its cached endpoints keep serving; after the heal its watch sees a new instance."""
    env = {"PYTHONPATH": str(ROOT)}
    ttl = 2.0
    with registry_process() as reg:
        url = f"meshkit://{reg.address}?ttl={ttl:g}"
        with (
            service_process("tests.rpc.services:Greeter", registry=url, env=env, cwd=str(ROOT)),
            service_process("tests.rpc.services:Greeter", registry=url, env=env, cwd=str(ROOT)),
        ):
            async with FaultProxy(reg.address) as proxy:
                client = Client(registry=f"meshkit://{proxy.address}?ttl={ttl:g}", middleware=[], timeout=TIMEOUT)
                async with client:
                    greeter = client.proxy(Greeter)

                    def known() -> int:
                        eps = client.endpoints().get("greeter")
                        return len(eps.nodes) if eps is not None else 0

                    await greeter.hello("warm")  # the client resolves (and watches) a service at its first call
                    await until(lambda: known() == 2)
                    counts = {"ok": 0, "failed": 0}
                    smallest = 2
                    stop = asyncio.Event()

                    async def worker() -> None:
                        nonlocal smallest
                        while not stop.is_set():
                            try:
                                await greeter.hello("x")
                                counts["ok"] += 1
                            except RpcError:
                                counts["failed"] += 1
                                await asyncio.sleep(0.001)  # a call that fails at once must still yield the loop
                            smallest = min(smallest, known())

                    workers = [asyncio.create_task(worker()) for _ in range(4)]
                    proxy.partition()
                    await asyncio.sleep(seconds)  # the partition lasts this long (the scenario's input)
                    during = dict(counts)
                    proxy.heal()
                    with service_process("tests.rpc.services:Greeter", registry=url, env=env, cwd=str(ROOT)):
                        loop = asyncio.get_running_loop()
                        start = loop.time()
                        await until(lambda: known() == 3)  # the watch works again
                        seen_new = loop.time() - start
                        stop.set()
                        await asyncio.gather(*workers)
    reliability.record(
        f"partition client-registry ({'shorter' if seconds < ttl else 'longer'} than the {ttl:g} s TTL)",
        f"the client cut off from the registry for {seconds:g} s; 2 instances keep their leases; 4 callers",
        "calls keep working; endpoints dropped = 0; the watch resumes after heal",
        f"calls during the partition ok {during['ok']}, failed {during['failed']}; endpoints dropped {2 - smallest}; "
        f"a new instance seen {seen_new:.2f} s after it registered",
    )
    assert during["failed"] == 0 and during["ok"] > 0
    assert smallest == 2
