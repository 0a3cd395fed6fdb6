"""A graceful rolling restart of every instance under load: each is replaced (a new one registers,
the old one gets SIGTERM, deregisters, sends GOAWAY and drains): failed calls = 0, and the calls are
non-idempotent ledger writes, so a call that ran twice (a call wrongly reported as not processed
and re-sent elsewhere) or acknowledged without running shows in the ledgers."""

from __future__ import annotations

import asyncio
import collections
import itertools
from pathlib import Path
from typing import Any

from meshkit import Client
from meshkit.discovery import open_registry
from meshkit.testing import registry_process, service_process
from tests.faults.calls import Callers
from tests.faults.conftest import ROOT, Reliability, until
from tests.helpers import CHILD_PYTHONPATH

INSTANCES = 3
CALLERS = 8
SERVICE = "tests.faults.services:Ledger"


async def test_a_rolling_restart_under_load_fails_no_call(tmp_path: Path, reliability: Reliability) -> None:
    ledgers = [tmp_path / f"{n}.ledger" for n in range(2 * INSTANCES)]
    env = {"PYTHONPATH": CHILD_PYTHONPATH, "LEDGER_HOLD": "0.02"}  # calls are in flight at every moment
    ids = itertools.count()
    acknowledged: list[str] = []
    wrong: list[tuple[str, object]] = []  # answers to another call than the one made

    async def record() -> None:
        call_id = f"c{next(ids)}"
        answer = await client.call("ledger", "record", {"call_id": call_id})
        if answer == call_id:
            acknowledged.append(call_id)
        else:
            wrong.append((call_id, answer))

    with registry_process() as reg:
        url = f"meshkit://{reg.address}"
        registry = open_registry(url)
        # Entered by hand (in a thread: starting waits for the child's first line) so that the
        # instances can be started and stopped one by one; every one is exited in `finally`.
        managers = [_instance(url, env, ledgers[n]) for n in range(INSTANCES)]
        running = [await asyncio.to_thread(cm.__enter__) for cm in managers]
        try:
            async with Client(registry=url, middleware=[], timeout=10) as client:
                callers = Callers(CALLERS, record)
                await _wait_instances(registry, INSTANCES)
                for i in range(INSTANCES):
                    cm = _instance(url, env, ledgers[INSTANCES + i])
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
    recorded = [i for path in ledgers if path.exists() for i in path.read_text().split()]
    counts = collections.Counter(recorded)
    twice = sorted(i for i, n in counts.items() if n > 1)
    unrecorded = [i for i in acknowledged if i not in counts]
    reliability.record(
        "graceful rolling restart",
        f"each of {INSTANCES} instances replaced in turn (new one up, SIGTERM to the old) under {CALLERS} callers "
        "of a non-idempotent ledger write",
        "failed calls = 0; no call runs twice; every acknowledged call ran",
        f"calls ok {callers.ok}, failed {sum(failed.values())}"
        + (f" {failed}" if failed else "")
        + f", run twice {len(twice)}, acknowledged but not run {len(unrecorded)}",
    )
    assert failed == {}
    assert twice == [], f"calls run twice (reported not processed, then re-sent): {twice[:10]}"
    assert unrecorded == []
    assert wrong == []
    assert len(acknowledged) == callers.ok


async def _wait_instances(registry: object, n: int) -> None:
    async def count() -> int:
        return len(await registry.resolve("ledger"))  # type: ignore[attr-defined]

    loop = asyncio.get_running_loop()
    end = loop.time() + 20
    while await count() != n:
        if loop.time() > end:
            raise AssertionError(f"the registry did not reach {n} instances")
        await asyncio.sleep(0.02)


def _instance(url: str, env: dict[str, str], ledger: Path) -> Any:
    env = {**env, "LEDGER_FILE": str(ledger)}
    return service_process(SERVICE, registry=url, args=["--grace", "10"], env=env, cwd=str(ROOT))
