"""What the fault scenarios share: a client middleware that logs every call, and callers that
keep calling until told to stop."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from meshkit import RpcError
from meshkit.rpc.middleware import Call, Handler


@dataclass(frozen=True, slots=True)
class Record:
    start: float
    end: float
    peer: str
    outcome: str  # "OK" or the status code's name


class CallLog:
    """Every call's start, end, instance and outcome, as seen by the client (loop time)."""

    def __init__(self) -> None:
        self.records: list[Record] = []

    def middleware(self, next_handler: Handler) -> Handler:
        loop = asyncio.get_running_loop()
        records = self.records

        async def handler(call: Call) -> Any:
            start = loop.time()
            try:
                result = await next_handler(call)
            except RpcError as exc:
                records.append(Record(start, loop.time(), call.peer, exc.code.name))
                raise
            records.append(Record(start, loop.time(), call.peer, "OK"))
            return result

        return handler

    def served_by(self, peer: str) -> int:
        return sum(1 for r in self.records if r.peer == peer and r.outcome == "OK")

    def __len__(self) -> int:
        return len(self.records)


class Callers:
    """``count`` tasks, each calling ``call()`` again and again until ``stop()``; outcomes are
    counted by status ("OK" for a success). After a failure a caller pauses ``pause`` seconds:
    a call that fails at once must still yield the loop (pacing, not for correctness).
    ``after_each`` runs after every call (a scenario's probe of the client's state)."""

    def __init__(
        self,
        count: int,
        call: Callable[[], Awaitable[object]],
        pause: float = 0.001,
        after_each: Callable[[], None] | None = None,
    ) -> None:
        self.outcomes: collections.Counter[str] = collections.Counter()
        self._call, self._pause, self._after = call, pause, after_each
        self._stopping = asyncio.Event()
        self._tasks = [asyncio.create_task(self._run()) for _ in range(count)]

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self._call()
                self.outcomes["OK"] += 1
            except RpcError as exc:
                self.outcomes[exc.code.name] += 1
                await asyncio.sleep(self._pause)
            if self._after is not None:
                self._after()

    @property
    def ok(self) -> int:
        return self.outcomes["OK"]

    @property
    def failed(self) -> int:
        return sum(n for outcome, n in self.outcomes.items() if outcome != "OK")

    async def stop(self) -> None:
        """Let every caller finish its call in flight, then end."""
        self._stopping.set()
        await asyncio.gather(*self._tasks)
