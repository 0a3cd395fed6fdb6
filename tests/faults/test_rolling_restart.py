"""A graceful rolling restart of every instance under load: each is replaced (a new one registers,
the old one gets SIGTERM, deregisters, sends GOAWAY and drains): failed calls = 0."""

from __future__ import annotations

import asyncio
from typing import Any

from meshkit import Client
from meshkit.discovery import open_registry
from meshkit.testing import registry_process, service_process
from tests.faults.calls import Callers
from tests.faults.conftest import ROOT, Reliability, until
from tests.rpc.services import Greeter

INSTANCES = 3
CALLERS = 8
SERVICE = "tests.rpc.services:Greeter"


async def test_a_rolling_restart_under_load_fails_no_call(reliability: Reliability) -> None:
    env = {"PYTHONPATH": str(ROOT)}
    with registry_process() as reg:
        url = f"meshkit://{reg.address}"
        registry = open_registry(url)
        # Entered by hand (in a thread: starting waits for the child's first line) so that the
        # instances can be started and stopped one by one; every one is exited in `finally`.
        managers = [_instance(url, env) for _ in range(INSTANCES)]
        running = [await asyncio.to_thread(cm.__enter__) for cm in managers]
        try:
            async with Client(registry=url, middleware=[], timeout=10) as client:
                greeter = client.proxy(Greeter)
                callers = Callers(CALLERS, lambda: greeter.sleep(0.02))  # calls are in flight at every moment
                await _wait_instances(registry, INSTANCES)
                for i in range(INSTANCES):
                    cm = _instance(url, env)
                    running.append(await asyncio.to_thread(cm.__enter__))
                    managers.append(cm)
                    await _wait_instances(registry, INSTANCES + 1)
                    old = running[i]
                    old.terminate()
                    code = await asyncio.to_thread(old.wait, 15)
                    assert code == 0, f"instance {old.pid} exited with {code}"
                    await _wait_instances(registry, INSTANCES)
                served = callers.ok
                await until(lambda: callers.ok >= served + 200)  # the new ones serve
                await callers.stop()
        finally:
            for cm in managers:
                await asyncio.to_thread(cm.__exit__, None, None, None)
            await registry.close()
    failed = {k: v for k, v in callers.outcomes.items() if k != "OK"}
    reliability.record(
        "graceful rolling restart",
        f"each of {INSTANCES} instances replaced in turn (new one up, SIGTERM to the old) under {CALLERS} callers",
        "failed calls = 0",
        f"calls ok {callers.ok}, failed {sum(failed.values())}" + (f" {failed}" if failed else ""),
    )
    assert failed == {}


async def _wait_instances(registry: object, n: int) -> None:
    async def count() -> int:
        return len(await registry.resolve("greeter"))  # type: ignore[attr-defined]

    loop = asyncio.get_running_loop()
    end = loop.time() + 20
    while await count() != n:
        if loop.time() > end:
            raise AssertionError(f"the registry did not reach {n} instances")
        await asyncio.sleep(0.02)


def _instance(url: str, env: dict[str, str]) -> Any:
    return service_process(SERVICE, registry=url, args=["--grace", "10"], env=env, cwd=str(ROOT))
