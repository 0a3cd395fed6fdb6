"""kill -9 a server with calls in flight: every call ends (ok, error, or unknown), nothing
acknowledged is lost, and a non-idempotent call is never sent again once it reached a server."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from meshkit import Client, RpcError
from meshkit.testing import service_process
from tests.faults.conftest import ROOT, Reliability, until

N = 200
AFTER = 100


def _ledger(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


async def test_kill_9_with_calls_in_flight_loses_nothing_acknowledged(tmp_path: Path, reliability: Reliability) -> None:
    ledgers = [tmp_path / "a.ledger", tmp_path / "b.ledger"]
    env = {"PYTHONPATH": str(ROOT), "LEDGER_HOLD": "1.0"}
    service = "tests.faults.services:Ledger"
    with (
        service_process(service, env={**env, "LEDGER_FILE": str(ledgers[0])}, cwd=str(ROOT)) as a,
        service_process(service, env={**env, "LEDGER_FILE": str(ledgers[1])}, cwd=str(ROOT)) as b,
    ):
        async with Client(target=f"{a.address},{b.address}", middleware=[], timeout=20) as client:

            async def call(call_id: str) -> tuple[str, str]:
                try:
                    await client.call("ledger", "record", {"call_id": call_id})
                    return call_id, "ok"
                except RpcError as exc:
                    return call_id, "not processed" if exc.not_processed else f"unknown ({exc.code.name})"

            in_flight = [asyncio.create_task(call(f"k{i}")) for i in range(N)]
            await until(lambda: len(_ledger(ledgers[0])) + len(_ledger(ledgers[1])) == N)  # all have arrived
            on_a = len(_ledger(ledgers[0]))
            a.kill()
            first = await asyncio.wait_for(asyncio.gather(*in_flight), timeout=30)  # every call ends
            after = await asyncio.wait_for(asyncio.gather(*(call(f"n{i}") for i in range(AFTER))), timeout=30)
    results = dict(first + after)
    recorded = _ledger(ledgers[0]) + _ledger(ledgers[1])
    seen = set(recorded)
    acknowledged = [i for i, outcome in results.items() if outcome == "ok"]
    lost = [i for i in acknowledged if i not in seen]
    duplicated = sorted({i for i in recorded if recorded.count(i) > 1})
    refused_but_ran = [i for i, outcome in results.items() if outcome == "not processed" and i in seen]
    unknown = [i for i, outcome in results.items() if outcome.startswith("unknown")]
    reliability.record(
        "kill -9 with calls in flight",
        f"SIGKILL of 1 of 2 instances with {N} non-idempotent calls in flight ({on_a} on it), then {AFTER} more",
        "every call ends; acknowledged-but-lost = 0; no call runs twice; not-processed means not run",
        f"ok {len(acknowledged)}, unknown {len(unknown)}, acknowledged-but-lost {len(lost)}, "
        f"run twice {len(duplicated)}, refused-but-ran {len(refused_but_ran)}",
    )
    assert lost == []
    assert duplicated == []
    assert refused_but_ran == []
    assert 0 < on_a < N  # the scenario really had calls on the killed instance, and on the other
    assert len(unknown) == on_a  # exactly the killed instance's calls are unknown to their callers
    assert all(results[f"n{i}"] == "ok" for i in range(AFTER))  # service continues on the survivor
    assert os.path.exists(ledgers[1])
