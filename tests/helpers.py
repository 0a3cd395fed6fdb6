"""What tests across the suite share: whether this is a CI run, polling a condition with a deadline
(``eventually``), and the event loop's measured lag
(what a wall-clock bound in a test must allow for, since no timer fires before the loop gets round
to it)."""

from __future__ import annotations

import asyncio
import inspect
import os
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

#: What a child process of a test puts on its path: this checkout's ``src`` first (so it runs the
#: code under test, never another install), then the root (for the ``tests.*`` services it loads).
ROOT = Path(__file__).resolve().parents[1]
CHILD_PYTHONPATH = os.pathsep.join((str(ROOT / "src"), str(ROOT)))


def in_ci() -> bool:
    """True when the suite runs in CI (``CI=true``, as CI services and ``.ci/run`` set it)."""
    return os.environ.get("CI", "").lower() == "true"


class LoopLag:
    """The event loop's worst lateness while a scenario ran: a timer (a deadline's, too) cannot
    fire sooner than the loop gets round to it, so a bound on how late something may happen must
    allow for it. A task asks to wake every ``period`` and records how late it woke. Use
    ``start()``/``stop()`` or ``with LoopLag() as lag:`` inside a coroutine."""

    def __init__(self, period: float = 0.01) -> None:
        self.period = period
        self.worst = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self.period
            await asyncio.sleep(self.period)  # the measurement itself: how late this wakes
            self.worst = max(self.worst, loop.time() - due)

    def start(self) -> LoopLag:
        self._task = asyncio.get_running_loop().create_task(self._watch())
        return self

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def __enter__(self) -> LoopLag:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


async def eventually(
    check: Callable[[], Any], timeout: float = 10.0, what: str = "condition", interval: float = 0.01
) -> None:
    """Poll ``check()`` (sync, or returning an awaitable) until it is true, failing the test after
    ``timeout`` seconds: a condition with a deadline, never a sleep for correctness."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            pytest.fail(f"{what} did not happen within {timeout:g} s")
        await asyncio.sleep(interval)
