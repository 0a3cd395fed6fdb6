"""Run a handler coroutine eagerly; make a Task only when one is needed.

Most handlers of a fast service finish without awaiting anything that blocks. Creating a Task per
call was measured to cost a third of the throughput (x1.70 of the raw echo eager, x1.09 with a Task
per call, bench/rpc.py at 64 in flight), so the dispatcher steps the coroutine once inline and
wraps the rest of it in a Task only when it yields.

On Python 3.12+ the dispatcher does not use this module's stepping: it makes the call's Task with
``eager_start=True``, which steps the coroutine inline in C and is a real Task from the first line,
and ``install`` does nothing (``NATIVE_EAGER``). Measured on 3.12.1 (bench/micro/icount.sh,
instructions per call, 2026-12-02): a handler that finishes in its first step costs 37,252 with
the native eager Task against 37,528 with this module's step; one that suspends once
(``await asyncio.sleep(0)``) 74,743 against 80,861, since the native Task continues the
coroutine itself where this module needs an EagerCall, a second Task and ``resume`` in between.
So on 3.12+ no process-wide wrapper is needed and nothing is slower for it.

On 3.11 (which has no eager tasks) two things keep the stepping invisible to handler code:

- The step runs in a fresh copy of the context, and the Task that continues it runs in *that same*
  Context, so contextvars set before a suspension can be reset after it (OpenTelemetry's
  attach/detach does exactly that) and nothing a handler sets leaks into the next call.
- ``asyncio.current_task()`` works during the step: asking for it (as ``asyncio.timeout``,
  ``TaskGroup`` and aiohttp's timers do) creates the continuing Task on the spot and makes it the
  current task, so a timeout entered before the first suspension cancels the right Task later.
  This is done by wrapping ``asyncio.current_task`` (and ``asyncio.tasks.current_task``) once, when
  the first Server starts (idempotent); the wrapper defers to the original outside an eager step,
  which costs every ``current_task()`` call in the process about 540 instructions more (one Python
  frame: 2,222 against 1,680 per call of a loop calling it, callgrind, 3.11.7). Code that bound the
  original function before meshkit was imported (``from asyncio import current_task``) still sees
  None there.
"""

from __future__ import annotations

import asyncio
import contextvars
import sys
import types
from asyncio import events
from collections.abc import Callable, Coroutine, Generator
from typing import Any

#: Python 3.12+ steps a Task eagerly itself (``asyncio.Task(..., eager_start=True)``): the
#: dispatcher uses that there, and nothing here is installed (see the module docstring).
NATIVE_EAGER = sys.version_info >= (3, 12)

_enter_task = asyncio.tasks._enter_task
_leave_task = asyncio.tasks._leave_task
_get_running_loop = events._get_running_loop


class EagerCall:
    """One handler call: stepped inline first, continued by a Task if it suspends.

    It is also the server's handle for the call (``cancel``), so a CANCEL or a deadline that
    arrives before the Task has started still reaches the handler as CancelledError.
    """

    __slots__ = (
        "cancel_requested",
        "context",
        "continuation",
        "coro",
        "entered",
        "finished",
        "loop",
        "owner",
        "started",
        "task",
        "yielded",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        coro: Coroutine[Any, Any, Any],
        context: contextvars.Context,
        continuation: Callable[[EagerCall], Coroutine[Any, Any, None]],
        owner: Any = None,
    ) -> None:
        self.loop = loop
        self.coro = coro
        self.context = context
        self.continuation = continuation
        self.owner = owner  # what the continuation needs to answer: the caller's own data
        self.task: asyncio.Task[None] | None = None
        self.entered = False
        self.finished = False
        self.started = False
        self.yielded: Any = None
        self.cancel_requested: str | None = None

    def materialize(self) -> asyncio.Task[None]:
        """The Task that continues this call (created on first need, in the call's own Context)."""
        task = self.task
        if task is None:
            task = self.task = self.loop.create_task(self.continuation(self), context=self.context)
        return task

    def cancel(self, msg: Any = None) -> None:
        """Cancel the handler: now if its Task runs, else as soon as the Task starts."""
        self.cancel_requested = str(msg) if msg is not None else "cancelled"
        if self.started and self.task is not None:
            self.task.cancel(msg)


class TaskCall:
    """3.12+: the server's handle of a call whose native eager Task suspended. It records who
    cancelled it, so the answer can tell a deadline from a CANCEL from the handler's own doing."""

    __slots__ = ("cancel_requested", "task")

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.task = task
        self.cancel_requested: str | None = None

    def cancel(self, msg: Any = None) -> None:
        self.cancel_requested = str(msg) if msg is not None else "cancelled"
        self.task.cancel(msg)


#: What is being stepped right now, at most one per thread (steps are synchronous): None, or a
#: tuple ``(factory, *args)`` that makes the EagerCall if someone asks for the current task, or
#: that EagerCall once made. The server sets and clears it around each step.
stepping: list[Any] = [None]


def end_step(call: EagerCall) -> None:
    """After a step that made ``call`` the current task: it is not current any more."""
    if call.entered:
        call.entered = False
        assert call.task is not None
        _leave_task(call.loop, call.task)


_original_current_task = asyncio.current_task


def _current_task(loop: asyncio.AbstractEventLoop | None = None) -> asyncio.Task[Any] | None:
    made = stepping[0]
    if made is None:
        return _original_current_task(loop)
    if made.__class__ is not EagerCall:
        running = _get_running_loop()
        if running is None or running is not made[1] or (loop is not None and loop is not running):
            return _original_current_task(loop)
        made = stepping[0] = made[0](*made[1:])
    if loop is not None and loop is not made.loop:
        return _original_current_task(loop)
    task: asyncio.Task[Any] = made.materialize()
    if not made.entered:
        _enter_task(made.loop, task)
        made.entered = True
    return task


def install() -> None:
    """Make ``asyncio.current_task`` eager-aware (idempotent). Nothing on 3.12+, where the
    dispatcher's eager step is a real Task."""
    if NATIVE_EAGER:
        return
    if asyncio.current_task is not _current_task:
        asyncio.current_task = _current_task
        asyncio.tasks.current_task = _current_task  # what asyncio.timeout and TaskGroup call


@types.coroutine
def resume(
    coro: Coroutine[Any, Any, Any], yielded: Any, throw: BaseException | None = None
) -> Generator[Any, Any, Any]:
    """Continue ``coro`` from a suspension that already happened outside a Task.

    The Task running this generator sees exactly what ``coro`` yields (the future it waits on) and
    forwards sends and throws (cancellation) back into it. ``throw`` is delivered first: a
    cancellation that arrived before the Task could start.
    """
    if throw is not None:
        try:
            yielded = coro.throw(throw)
        except StopIteration as stop:
            return stop.value
    while True:
        try:
            sent = yield yielded
        except BaseException as exc:  # noqa: BLE001 - cancellation and throws go to the handler
            try:
                yielded = coro.throw(exc)
            except StopIteration as stop:
                return stop.value
        else:
            try:
                yielded = coro.send(sent)
            except StopIteration as stop:
                return stop.value
