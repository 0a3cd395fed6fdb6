"""The built-in registry with N real instances (``meshkit run`` processes), N = 4, 8, 16: half of
them frozen at once (SIGSTOP, as a partition looks to the registry) are held by self-preservation
(still listed after their leases expired), then released when the bound runs out; resumed, they
register again; then one instance killed (SIGKILL) is evicted within its TTL and an eviction round,
with no self-preservation at all. The registry's own figures (``stats``) are the evidence."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

from meshkit import Client
from meshkit.testing import ServiceProcess, registry_process, service_process
from tests.faults.conftest import ROOT, Reliability
from tests.helpers import CHILD_PYTHONPATH

TTL = 2.0
HOLD_FOR = 5.0
ROUND = 1.0  # the registry evicts once a second
SLACK = 1.5  # scheduling on a busy 2-core machine, and our polling


async def _stats(client: Client) -> dict[str, Any]:
    stats: dict[str, Any] = await client.call("registry", "stats", {})
    return stats


async def _wait_for(client: Client, what: str, condition: Any, timeout: float) -> tuple[dict[str, Any], float]:
    """Poll the registry's stats until ``condition(stats)`` holds; (stats, seconds waited)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while True:
        stats = await _stats(client)
        if condition(stats):
            return stats, loop.time() - start
        if loop.time() - start > timeout:
            raise AssertionError(f"{what}: not within {timeout:g} s; the registry says {stats}")
        await asyncio.sleep(0.05)


async def _listed(client: Client) -> int:
    return len(await client.call("registry", "instances", {"service": "greeter"}))


@pytest.mark.slow
@pytest.mark.timeout(150)
@pytest.mark.parametrize("n", [4, 8, 16])
async def test_self_preservation_holds_a_frozen_half_and_never_a_single_death(n: int, reliability: Reliability) -> None:
    env = {"PYTHONPATH": CHILD_PYTHONPATH}
    with registry_process(["--self-preservation", f"{HOLD_FOR:g}"]) as registry:
        url = f"meshkit://{registry.address}?ttl={TTL:g}"
        with contextlib.ExitStack() as stack:
            managers = [
                service_process("tests.rpc.services:Greeter", registry=url, env=env, cwd=str(ROOT)) for _ in range(n)
            ]
            started = await asyncio.gather(*(asyncio.to_thread(stack.enter_context, cm) for cm in managers))
            instances: list[ServiceProcess] = list(started)
            async with Client(target=registry.address, middleware=[], timeout=2.0) as client:
                await _wait_for(client, "all instances registered", lambda s: s["leases"] == n, 30)
                held, released = await _freeze_half(client, instances, n)
                evicted_after = await _kill_one(client, instances[-1], n)
    reliability.record(
        f"registry self-preservation, {n} instances",
        f"half of {n} `meshkit run` instances SIGSTOPped at once, later resumed; then 1 SIGKILLed "
        f"(TTL {TTL:g} s, --self-preservation {HOLD_FOR:g})",
        "the frozen half stays listed while held and is evicted once the bound runs out; one death is "
        "evicted within TTL + an eviction round, with no self-preservation",
        f"held {held} expired leases; released {released:.1f} s after holding began (bound {HOLD_FOR:g} s); "
        f"the killed one evicted {evicted_after:.1f} s after the kill",
    )


async def _freeze_half(client: Client, instances: list[ServiceProcess], n: int) -> tuple[int, float]:
    half = instances[: n // 2]
    for proc in half:
        proc.pause()
    try:
        on = TTL + ROUND + SLACK
        stats, _ = await _wait_for(client, "self-preservation on", lambda s: s["self_preservation"], on)
        assert stats["evictions"] == 0 and stats["held"] >= 1, stats
        held = int(stats["held"])
        assert await _listed(client) == n, "held leases must still be served to clients"
        stats, released = await _wait_for(
            client, "released after the bound", lambda s: not s["self_preservation"], HOLD_FOR + ROUND + SLACK
        )
        # Not early: the bound is a floor (a slow machine only makes it later).
        assert released >= HOLD_FOR - ROUND - 0.2, released
        assert stats["evictions"] == n // 2 and stats["leases"] == n - n // 2, stats
        assert stats["self_preservation_episodes"] == 1, stats
        assert await _listed(client) == n - n // 2
    finally:
        for proc in half:
            proc.resume()
    # Their next heartbeat finds the lease unknown: they register again.
    await _wait_for(client, "the resumed half registered again", lambda s: s["leases"] == n, 3 * TTL + SLACK)
    return held, released


async def _kill_one(client: Client, victim: ServiceProcess, n: int) -> float:
    before = await _stats(client)
    victim.kill()
    stats, waited = await _wait_for(
        client, "the killed instance evicted", lambda s: s["evictions"] == before["evictions"] + 1, TTL + ROUND + SLACK
    )
    assert not stats["self_preservation"] and stats["self_preservation_episodes"] == 1, stats
    assert stats["leases"] == n - 1 and await _listed(client) == n - 1, stats
    return waited
