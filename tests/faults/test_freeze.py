"""A frozen instance process (SIGSTOP): its kernel still completes TCP handshakes, so only
keepalive can tell it is gone, and a new connection to it proves nothing. Keepalive finds it,
its calls in flight fail as "unknown" (never re-sent: they may run when it thaws), no request is
sent to it while it is frozen (the pool probes a new connection with a PING first), and after
SIGCONT it serves again."""

from __future__ import annotations

import asyncio

from meshkit import Client
from meshkit.protocol.keepalive import KeepaliveConfig
from meshkit.testing import service_process
from tests.faults.calls import Callers, CallLog
from tests.faults.conftest import ROOT, Reliability, until
from tests.helpers import CHILD_PYTHONPATH
from tests.rpc.services import Greeter

KEEPALIVE = KeepaliveConfig(interval=0.2, timeout=0.2)
FROZEN = 2.0


async def test_a_frozen_instance_gets_no_requests_until_it_thaws(reliability: Reliability) -> None:
    env = {"PYTHONPATH": CHILD_PYTHONPATH}
    loop = asyncio.get_running_loop()
    log = CallLog()
    with (
        service_process("tests.rpc.services:Greeter", env=env, cwd=str(ROOT)) as warm,
        service_process("tests.rpc.services:Greeter", env=env, cwd=str(ROOT)) as frozen,
    ):
        target = f"{warm.address},{frozen.address}"
        client = Client(
            target=target, middleware=[log.middleware], keepalive=KEEPALIVE, timeout=10.0, balancer="round_robin"
        )
        async with client:
            greeter = client.proxy(Greeter)
            callers = Callers(3, lambda: greeter.hello("x"))
            await until(lambda: log.served_by(frozen.address) >= 20)
            frozen_at = loop.time()
            frozen.pause()
            await until(lambda: any(r.peer == frozen.address and r.outcome != "OK" for r in log.records))
            detected_at = min(r.end for r in log.records if r.peer == frozen.address and r.outcome != "OK")
            await asyncio.sleep(FROZEN)  # it stays frozen this long (the scenario's input)
            thawed_at = loop.time()
            frozen.resume()

            def served_after_thaw() -> list[float]:
                return [
                    r.end for r in log.records if r.start > thawed_at and r.peer == frozen.address and r.outcome == "OK"
                ]

            await until(lambda: bool(served_after_thaw()), 30)  # an answer from it, not just an attempt
            back = min(served_after_thaw()) - thawed_at
            await callers.stop()
    lost = [r for r in log.records if r.peer == frozen.address and r.outcome != "OK"]
    sent_while_frozen = [r for r in log.records if r.peer == frozen.address and detected_at <= r.start < thawed_at]
    elsewhere = [r for r in log.records if r.peer != frozen.address and r.outcome != "OK"]
    reliability.record(
        "frozen instance (SIGSTOP)",
        f"1 of 2 instance processes SIGSTOPped for {FROZEN:g} s after detection, then SIGCONT; 3 callers, round robin",
        "found by keepalive; its calls in flight fail (unknown, not re-sent); no request sent to it while "
        "frozen; serves again after SIGCONT",
        f"detected in {detected_at - frozen_at:.2f} s; calls lost with it {len(lost)}; sent to it while frozen "
        f"{len(sent_while_frozen)}; errors elsewhere {len(elsewhere)}; serving again {back:.2f} s after SIGCONT",
    )
    assert lost and all(r.outcome == "UNAVAILABLE" for r in lost), lost
    assert sent_while_frozen == [], sent_while_frozen
    assert elsewhere == [], elsewhere
