"""The amnesia guard's hold is bounded even when the watch keeps reconnecting: an instance
the registry stopped showing leaves the view once the grace period (the TTL) has passed, however
often the watch stream breaks and reconnects meanwhile (a flapping registry connection, a proxy
with a short stream timeout, a crash-looping registry replica)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

from meshkit.discovery.events import WATCH_EVENTS
from meshkit.discovery.instance import Instance
from meshkit.errors import RpcError, StatusCode
from meshkit.rpc.endpoints import Endpoints, watch_service
from meshkit.transport.backoff import Backoff, BackoffPolicy
from tests.discovery.test_amnesia import _Peer, _Registry


def _instance(n: int) -> Instance:
    return Instance(service="flap", host="127.0.0.1", port=9000 + n, id=f"i{n}")


A, B = _instance(1), _instance(2)


async def _until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not condition():
        assert loop.time() < end, "condition not reached"
        await asyncio.sleep(0.002)  # polling a condition, not timing the outcome


async def test_an_instance_the_registry_never_shows_again_is_let_go_despite_repeated_reconnects() -> None:
    grace = 0.2
    registry = _Registry()
    eps = Endpoints("flap", "round_robin", _Peer, random.Random(0), warmup=0.0)  # type: ignore[arg-type]
    backoff = Backoff(BackoffPolicy(initial=0.001, multiplier=1.0, jitter=0.0, maximum=0.001))
    task = asyncio.create_task(watch_service(registry, eps, backoff, grace=grace))  # type: ignore[arg-type]
    loop = asyncio.get_running_loop()
    try:
        registry.queue.put_nowait([A, B])
        await _until(lambda: sorted(n.key for n in eps.nodes) == ["i1", "i2"])
        # From now on the registry is up and shows B only, but the watch stream breaks every
        # half TTL. A is gone for good: it should leave once one TTL has passed.
        start = loop.time()
        while loop.time() < start + 5 * grace:
            seen = WATCH_EVENTS["flap", "snapshot"]
            registry.queue.put_nowait(RpcError(StatusCode.UNAVAILABLE, "watch stream reset"))
            registry.queue.put_nowait([B])
            await _until(lambda: WATCH_EVENTS["flap", "snapshot"] > seen)  # noqa: B023 - used at once
            await asyncio.sleep(grace / 2)  # pacing the flapping registry, not timing an outcome
        # Five TTLs of a live registry that never showed A again.
        assert [n.key for n in eps.nodes] == ["i2"], "A is still held after 5 TTLs of a registry not showing it"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
