"""Services the fault scenarios run in their own processes."""

from __future__ import annotations

import asyncio
import os

from meshkit import Service, rpc


class Ledger(Service, name="ledger"):
    """A non-idempotent write: ``record`` appends the call's id to this process's ledger file
    ($LEDGER_FILE) before it waits and answers, so a call killed in the middle is in the ledger
    without an answer. The file outlives a SIGKILL (written to the kernel, not fsynced: the
    scenarios kill processes, not machines). It waits $LEDGER_HOLD seconds, or, with
    $LEDGER_GATED=1, until a ``release`` call opens the gate (a scenario decides when calls may
    end, instead of guessing a duration)."""

    def __init__(self) -> None:
        self.path = os.environ["LEDGER_FILE"]
        self.hold = float(os.environ.get("LEDGER_HOLD", "0.5"))
        self.gate: asyncio.Event | None = asyncio.Event() if os.environ.get("LEDGER_GATED") == "1" else None
        self.file = open(self.path, "a", buffering=1)  # noqa: SIM115 - open for the process's life

    @rpc
    async def record(self, call_id: str) -> str:
        self.file.write(call_id + "\n")
        self.file.flush()
        if self.gate is not None:
            await self.gate.wait()
        else:
            await asyncio.sleep(self.hold)
        return call_id

    @rpc(idempotent=True)
    async def release(self) -> None:
        """Open the gate: every ``record`` waiting, and every later one, answers."""
        if self.gate is not None:
            self.gate.set()

    @rpc(idempotent=True)
    async def ping(self) -> str:
        return str(os.getpid())
