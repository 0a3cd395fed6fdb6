"""kill -9 a server with calls in flight: every call ends (ok, error, or unknown), the killed
instance's calls end because its connection died (not by their deadline), nothing acknowledged is
lost, each acknowledgement is the answer to its own call, and a non-idempotent call is never sent
again once it reached a server."""

from __future__ import annotations

import asyncio
from pathlib import Path

from meshkit import Client, RpcError
from meshkit.testing import service_process
from tests.faults.conftest import ROOT, Reliability, until
from tests.helpers import CHILD_PYTHONPATH

N = 200
AFTER = 100
#: The calls' deadline, far beyond every wait below: a call may only end by its answer or by its
#: connection's death, so a pool that never notices the EOF fails the scenario instead of passing
#: it on DEADLINE_EXCEEDED.
TIMEOUT = 120.0
#: How soon after the kill the killed instance's calls must have ended: well below keepalive's
#: default 10 s + 5 s, so only noticing the EOF passes.
ENDED = 5.0


def _ledger(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


async def test_kill_9_with_calls_in_flight_loses_nothing_acknowledged(tmp_path: Path, reliability: Reliability) -> None:
    loop = asyncio.get_running_loop()
    ledgers = [tmp_path / "a.ledger", tmp_path / "b.ledger"]
    env = {"PYTHONPATH": CHILD_PYTHONPATH, "LEDGER_GATED": "1"}  # every call is held until the test releases it
    service = "tests.faults.services:Ledger"
    with (
        service_process(service, env={**env, "LEDGER_FILE": str(ledgers[0])}, cwd=str(ROOT)) as a,
        service_process(service, env={**env, "LEDGER_FILE": str(ledgers[1])}, cwd=str(ROOT)) as b,
    ):
        async with Client(target=f"{a.address},{b.address}", middleware=[], timeout=TIMEOUT) as client:

            async def call(call_id: str) -> tuple[str, str]:
                try:
                    answer = await client.call("ledger", "record", {"call_id": call_id})
                except RpcError as exc:
                    return call_id, "not processed" if exc.not_processed else f"unknown ({exc.code.name})"
                return call_id, "ok" if answer == call_id else f"wrong answer ({answer!r})"

            in_flight = {f"k{i}": asyncio.create_task(call(f"k{i}")) for i in range(N)}
            await until(lambda: len(_ledger(ledgers[0])) + len(_ledger(ledgers[1])) == N)  # all have arrived
            on_a = set(_ledger(ledgers[0]))
            killed_at = loop.time()
            a.kill()
            await until(lambda: all(in_flight[i].done() for i in on_a), ENDED)
            ended_in = loop.time() - killed_at
            held = [i for i, task in in_flight.items() if i not in on_a and task.done()]
            assert held == [], f"calls on the survivor ended before it was released: {held}"
            async with Client(target=b.address, middleware=[]) as direct:
                await direct.call("ledger", "release", {})
            first = await asyncio.wait_for(asyncio.gather(*in_flight.values()), timeout=30)
            after = await asyncio.wait_for(asyncio.gather(*(call(f"n{i}") for i in range(AFTER))), timeout=30)
    results = dict(first + after)
    recorded = _ledger(ledgers[0]) + _ledger(ledgers[1])
    seen = set(recorded)
    acknowledged = [i for i, outcome in results.items() if outcome == "ok"]
    wrong = {i: outcome for i, outcome in results.items() if outcome.startswith("wrong answer")}
    lost = [i for i in acknowledged if i not in seen]
    duplicated = sorted({i for i in recorded if recorded.count(i) > 1})
    refused_but_ran = [i for i, outcome in results.items() if outcome == "not processed" and i in seen]
    unknown = {i for i, outcome in results.items() if outcome.startswith("unknown")}
    reliability.record(
        "kill -9 with calls in flight",
        f"SIGKILL of 1 of 2 instances with {N} non-idempotent calls in flight ({len(on_a)} on it, all held by a "
        f"gate), then {AFTER} more; {TIMEOUT:g} s deadlines",
        "the killed instance's calls end on its EOF, not their deadline; every call ends; acknowledged-but-lost "
        "= 0; no call runs twice; not-processed means not run",
        f"the killed instance's calls ended {ended_in:.2f} s after the kill; ok {len(acknowledged)}, unknown "
        f"{len(unknown)}, acknowledged-but-lost {len(lost)}, run twice {len(duplicated)}, refused-but-ran "
        f"{len(refused_but_ran)}",
    )
    assert wrong == {}  # an acknowledgement answers its own call (a mixed-up answer would pass for "ok")
    assert lost == []
    assert duplicated == []
    assert refused_but_ran == []
    assert 0 < len(on_a) < N  # the scenario really had calls on the killed instance, and on the other
    assert unknown == on_a  # exactly the killed instance's calls are unknown to their callers...
    assert {results[i] for i in on_a} == {"unknown (UNAVAILABLE)"}  # ...because their connection died
    assert all(results[f"k{i}"] == "ok" for i in range(N) if f"k{i}" not in on_a)  # the survivor's all answer
    assert all(results[f"n{i}"] == "ok" for i in range(AFTER))  # service continues on the survivor...
    survivor = _ledger(ledgers[1])
    assert {f"n{i}" for i in range(AFTER)} <= set(survivor)  # ...which ran them, each once
    assert not any(i.startswith("n") for i in _ledger(ledgers[0]))
