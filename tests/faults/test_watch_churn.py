"""Watch under churn and registry restarts: instances come and go while the built-in registry is
killed and restarted (empty) twice; a watcher's snapshots must end equal to what is really
registered, never list an instance twice, and never bring back one that was deregistered: once a
snapshot after its deregistration has shown it gone, no later one shows it (an out-of-order
event)."""

from __future__ import annotations

import asyncio
import functools
import itertools
import random
import socket
from collections.abc import Awaitable, Callable

import pytest

from meshkit import RpcError, StatusCode
from meshkit.discovery import open_registry
from meshkit.discovery.instance import Instance
from meshkit.testing import registry_process
from tests.faults.conftest import Reliability, until

SERVICE = "churn"
TTL = 2.0
INSTANCES = 30
REMOVED = 15


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _key(instance: Instance) -> str:
    return f"{instance.host}:{instance.port}"


@pytest.mark.timeout(120)
async def test_a_watch_under_churn_and_registry_restarts_ends_exact(reliability: Reliability) -> None:
    rng = random.Random(7)
    port = _free_port()
    url = f"meshkit://127.0.0.1:{port}?ttl={TTL:g}"
    snapshots: list[list[str]] = []
    arrived: list[float] = []  # when each snapshot arrived (loop time)
    deregistered_at: dict[str, float] = {}
    instances = [Instance(service=SERVICE, host="127.0.0.1", port=20000 + i, id=f"i{i}") for i in range(INSTANCES)]
    removed = set(rng.sample(range(INSTANCES), REMOVED))
    steps: list[tuple[str, int]] = [("add", i) for i in range(INSTANCES)]
    rng.shuffle(steps)
    for i in sorted(removed):  # each removal after its registration, at a random later point
        at = next(k for k, step in enumerate(steps) if step == ("add", i))
        steps.insert(rng.randint(at + 1, len(steps)), ("remove", i))
    restarts_at = {len(steps) // 3, 2 * len(steps) // 3}
    with registry_process(["--port", str(port)]) as first:
        writer = open_registry(url)
        watching = open_registry(url)
        rewatched = [0]

        async def consume() -> None:
            # As a client's endpoints do: a watch that fails (its registry died) is opened again,
            # and its first snapshot is the whole current state.
            while True:
                watch = watching.watch(SERVICE)
                try:
                    async for snapshot in watch:
                        snapshots.append([_key(i) for i in snapshot])
                        arrived.append(asyncio.get_running_loop().time())
                except RpcError:
                    rewatched[0] += 1
                    await asyncio.sleep(0.05)  # pacing between attempts
                finally:
                    await watch.close()

        consumer = asyncio.create_task(consume())
        current = first
        managers = []
        try:
            for n, (op, i) in enumerate(steps):
                if n in restarts_at:
                    current.kill()
                    await asyncio.to_thread(current.wait, 10)
                    manager = registry_process(["--port", str(port)])
                    current = await asyncio.to_thread(manager.__enter__)
                    managers.append(manager)
                action = writer.register if op == "add" else writer.deregister
                await _retrying(functools.partial(action, instances[i]))
                if op == "remove":
                    deregistered_at[_key(instances[i])] = asyncio.get_running_loop().time()
            expected = {_key(instances[i]) for i in range(INSTANCES) if i not in removed}

            async def registered() -> set[str]:
                return {_key(i) for i in await writer.resolve(SERVICE)}

            loop = asyncio.get_running_loop()
            end = loop.time() + 60
            while await registered() != expected:
                assert loop.time() < end, "the registry never converged"
                await asyncio.sleep(0.05)
            try:
                await until(lambda: bool(snapshots) and set(snapshots[-1]) == expected, timeout=30)
            except AssertionError:
                last = set(snapshots[-1]) if snapshots else set()
                raise AssertionError(
                    f"the watch did not converge: {len(snapshots)} snapshots; missing {sorted(expected - last)}, "
                    f"extra {sorted(last - expected)}"
                ) from None
        finally:
            consumer.cancel()
            await asyncio.gather(consumer, return_exceptions=True)
            await writer.close()
            await watching.close()
            for manager in managers:
                await asyncio.to_thread(manager.__exit__, None, None, None)
    duplicated = sum(len(s) - len(set(s)) for s in snapshots)
    final = set(snapshots[-1])
    lost = len(expected - final)
    resurrected = len(final - expected)
    events = sum(len(set(a) ^ set(b)) for a, b in itertools.pairwise(snapshots))
    out_of_order = 0
    for key, at in deregistered_at.items():
        later = [k for k, t in enumerate(arrived) if t >= at]
        gone = next((k for k in later if key not in snapshots[k]), None)
        if gone is not None:
            out_of_order += sum(1 for k in later if k > gone and key in snapshots[k])
    reliability.record(
        "watch under churn and registry restarts",
        f"{INSTANCES} registrations and {REMOVED} deregistrations in random order, the registry SIGKILLed and "
        "restarted empty twice meanwhile",
        "lost, duplicated and out-of-order membership events = 0: the watch ends equal to the registry; no "
        "instance twice in a snapshot; no deregistered one back",
        f"{len(snapshots)} snapshots ({rewatched[0]} re-watches), {events} membership changes seen; lost {lost}, "
        f"duplicated {duplicated}, out of order {out_of_order}, deregistered but still listed at the end {resurrected}",
    )
    assert lost == 0 and duplicated == 0 and resurrected == 0 and out_of_order == 0


async def _retrying(call: Callable[[], Awaitable[None]]) -> None:
    """A registry call, retried while the registry restarts (the writer is a server: it keeps
    trying, as meshkit's own registration does)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + 30
    while True:
        try:
            await call()
            return
        except RpcError as exc:
            if exc.code is not StatusCode.UNAVAILABLE or loop.time() > end:
                raise
            await asyncio.sleep(0.05)  # pacing between attempts
