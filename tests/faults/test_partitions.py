"""Partitions, then heal: between the client and one instance (shorter and longer than the
breaker's open time), between the client and the registry, and between one instance and the
registry (both shorter and longer than the lease TTL). No call runs past its deadline, calls fail
over to what is reachable, the client keeps the endpoints it knows (and drops an instance only
when the registry evicts it), and service is full again after the heal."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from meshkit import Client, Server
from meshkit.policy import Breaker, ClientRule, Policy, PolicyConfig, Shedding
from meshkit.protocol.keepalive import KeepaliveConfig
from meshkit.testing import FaultProxy, registry_process, service_process
from tests.faults.calls import Callers, CallLog
from tests.faults.conftest import ROOT, LoopLag, Reliability, until
from tests.helpers import CHILD_PYTHONPATH
from tests.rpc.services import Greeter

KEEPALIVE = KeepaliveConfig(interval=0.2, timeout=0.2)
TIMEOUT = 1.0
POLICY = PolicyConfig(
    shedding=Shedding(enabled=False),
    client={"*": ClientRule(instance_breaker=Breaker(window=2.0, min_calls=3, error_ratio=0.5, open_for=1.0))},
)


@dataclass
class PartitionRun:
    log: CallLog
    cut_at: float
    healed_at: float
    back: float  # from the heal to the first success of the cut instance
    lag: float  # the event loop's worst lateness meanwhile

    @property
    def longest(self) -> float:
        return max(r.end - r.start for r in self.log.records)

    def during(self) -> list[str]:
        return [r.outcome for r in self.log.records if self.cut_at < r.start < self.healed_at]


async def partition_one_instance(
    near: str, far: str, cut: Callable[[], None], heal: Callable[[], None], seconds: float
) -> PartitionRun:
    """8 callers over ``near`` and ``far`` (1 s deadlines, keepalive 0.2 + 0.2 s, instance
    breakers); ``far`` is cut off for ``seconds`` once it has served, then healed. ``cut`` and
    ``heal`` run in a thread (they may run commands)."""
    loop = asyncio.get_running_loop()
    log = CallLog()
    client = Client(
        target=f"{near},{far}", middleware=[log.middleware], keepalive=KEEPALIVE, timeout=TIMEOUT, policy=Policy(POLICY)
    )
    async with client:
        greeter = client.proxy(Greeter)
        lag = LoopLag().start()
        callers = Callers(8, lambda: greeter.sleep(0.005), pause=0.005)
        await until(lambda: log.served_by(far) >= 20)
        cut_at = loop.time()
        await asyncio.to_thread(cut)
        await asyncio.sleep(seconds)  # the partition lasts this long (the scenario's input)
        healed_at = loop.time()
        await asyncio.to_thread(heal)
        await until(lambda: any(r.start > healed_at and r.peer == far and r.outcome == "OK" for r in log.records), 30)
        after = [r for r in log.records if r.start > healed_at and r.peer == far and r.outcome == "OK"]
        await callers.stop()
        lag.stop()
    return PartitionRun(log, cut_at, healed_at, min(r.end for r in after) - healed_at, lag.worst)


def check_partition(run: PartitionRun) -> None:
    """No call past its deadline (beyond what the loop itself was late by, plus a little for the
    deadline timer's grain); calls failed over: at least half of those begun during it served."""
    assert run.longest - TIMEOUT <= 0.05 + run.lag, (run.longest, run.lag)
    during = run.during()
    served = during.count("OK")
    assert served > 0 and served >= len(during) // 2, during


@pytest.mark.parametrize("seconds", [0.5, 3.0], ids=["short", "long"])
async def test_a_partition_from_one_instance_fails_over_and_heals(seconds: float, reliability: Reliability) -> None:
    async with Server([Greeter()], middleware=[]) as a, Server([Greeter()], middleware=[]) as b:
        async with FaultProxy(b.address) as proxy:
            run = await partition_one_instance(a.address, proxy.address, proxy.partition, proxy.heal, seconds)
    during = run.during()
    reliability.record(
        f"partition client-instance ({'shorter' if seconds < 1 else 'longer'} than the breaker's 1 s)",
        f"1 of 2 instances cut off for {seconds:g} s (bytes held both ways), 8 callers, 1 s deadlines",
        "no call past its deadline; calls fail over; full service after heal",
        f"longest call {run.longest * 1000:.0f} ms; served during the partition {during.count('OK')} of "
        f"{len(during)}; failed calls {sum(1 for r in run.log.records if r.outcome != 'OK')}; the cut instance "
        f"serves again {run.back:.2f} s after heal; the event loop's worst lateness {run.lag * 1000:.0f} ms",
    )
    check_partition(run)


@pytest.mark.parametrize("seconds", [1.0, 4.0], ids=["shorter-than-ttl", "longer-than-ttl"])
async def test_a_partition_from_the_registry_drops_no_endpoint(seconds: float, reliability: Reliability) -> None:
    """The instances keep their leases (they reach the registry); only the client is cut off from
    it. Its cached endpoints keep serving; after the heal its watch sees a new instance."""
    env = {"PYTHONPATH": CHILD_PYTHONPATH}
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
                    smallest = 2

                    def watch_known() -> None:
                        nonlocal smallest
                        smallest = min(smallest, known())

                    callers = Callers(4, lambda: greeter.hello("x"), after_each=watch_known)
                    proxy.partition()
                    await asyncio.sleep(seconds)  # the partition lasts this long (the scenario's input)
                    during = dict(callers.outcomes)
                    proxy.heal()
                    with service_process("tests.rpc.services:Greeter", registry=url, env=env, cwd=str(ROOT)):
                        loop = asyncio.get_running_loop()
                        start = loop.time()
                        await until(lambda: known() == 3)  # the watch works again
                        seen_new = loop.time() - start
                        await callers.stop()
    ok_during = during.pop("OK", 0)
    failed_during = sum(during.values())
    reliability.record(
        f"partition client-registry ({'shorter' if seconds < ttl else 'longer'} than the {ttl:g} s TTL)",
        f"the client cut off from the registry for {seconds:g} s; 2 instances keep their leases; 4 callers",
        "calls keep working; endpoints dropped = 0; the watch resumes after heal",
        f"calls during the partition ok {ok_during}, failed {failed_during}; endpoints dropped {2 - smallest}; "
        f"a new instance seen {seen_new:.2f} s after it registered",
    )
    assert failed_during == 0 and ok_during > 0
    assert smallest == 2


@dataclass
class EvictionRun:
    callers: Callers
    cut_at: float
    evicted_at: float | None  # when the client's view lost the cut instance
    back: float  # from the heal until the client's view has it again


async def _cut_from_registry(url: str, far: str, proxy: FaultProxy, seconds: float) -> EvictionRun:
    """4 callers via ``url``; the registry proxy of instance ``far`` partitioned for ``seconds``."""
    loop = asyncio.get_running_loop()
    async with Client(registry=url, middleware=[], timeout=TIMEOUT) as client:
        greeter = client.proxy(Greeter)

        def addresses() -> set[str]:
            eps = client.endpoints().get("greeter")
            return {n.peer.address for n in eps.nodes} if eps is not None else set()

        await greeter.hello("warm")
        await until(lambda: len(addresses()) == 2)
        evicted_at: list[float] = []

        def watch_far() -> None:
            if far not in addresses() and not evicted_at:
                evicted_at.append(loop.time())

        callers = Callers(4, lambda: greeter.hello("x"), after_each=watch_far)
        cut_at = loop.time()
        proxy.partition()
        await asyncio.sleep(seconds)  # the partition lasts this long (the scenario's input)
        healed_at = loop.time()
        proxy.heal()
        await until(lambda: far in addresses(), 30)
        back = loop.time() - healed_at
        await callers.stop()
    return EvictionRun(callers, cut_at, evicted_at[0] if evicted_at else None, back)


@pytest.mark.parametrize("seconds", [0.8, 4.0], ids=["shorter-than-ttl", "longer-than-ttl"])
async def test_an_instance_cut_off_from_the_registry_is_evicted_only_past_the_ttl(
    seconds: float, reliability: Reliability
) -> None:
    """One instance reaches the registry through a proxy that is partitioned; the client still
    reaches it directly. Shorter than the TTL: its lease survives. Longer: the registry evicts it
    and clients stop using it (calls go to the other, none fails); after the heal it registers
    again and clients use it again."""
    env = {"PYTHONPATH": CHILD_PYTHONPATH}
    ttl = 2.0
    with registry_process() as reg:
        url = f"meshkit://{reg.address}?ttl={ttl:g}"
        async with FaultProxy(reg.address) as proxy:
            # The far instance registers through the proxy, which runs on this loop: start it from
            # a thread (starting waits for its first line), so that the loop keeps proxying.
            far = service_process(
                "tests.rpc.services:Greeter", registry=f"meshkit://{proxy.address}?ttl={ttl:g}", env=env, cwd=str(ROOT)
            )
            with service_process("tests.rpc.services:Greeter", registry=url, env=env, cwd=str(ROOT)):
                instance = await asyncio.to_thread(far.__enter__)
                try:
                    run = await _cut_from_registry(url, instance.address, proxy, seconds)
                finally:
                    await asyncio.to_thread(far.__exit__, None, None, None)
    evicted = f"evicted {run.evicted_at - run.cut_at:.2f} s into it" if run.evicted_at is not None else "not evicted"
    reliability.record(
        f"partition instance-registry ({'shorter' if seconds < ttl else 'longer'} than the {ttl:g} s TTL)",
        f"1 of 2 instances cut off from the registry (not from the client) for {seconds:g} s; 4 callers",
        "evicted only past the TTL; calls keep working; registered and used again after heal",
        f"{evicted}; calls ok {run.callers.ok}, failed {run.callers.failed}; in the client's view "
        f"{run.back:.2f} s after heal",
    )
    assert run.callers.failed == 0 and run.callers.ok > 0
    if seconds < ttl:
        assert run.evicted_at is None, "a partition shorter than the lease TTL evicted the instance"
    else:
        assert run.evicted_at is not None, "a partition longer than the lease TTL did not evict the instance"
        assert run.evicted_at - run.cut_at >= ttl / 2, "evicted, but not by its lease running out"
