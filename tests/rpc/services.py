"""Services shared by the RPC tests (importable by subprocesses as tests.rpc.services)."""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import os
from collections.abc import AsyncIterator

import msgspec

from meshkit import Client, RpcError, Service, StatusCode, current_context, rpc


class Item(msgspec.Struct):
    id: int
    name: str
    tags: list[str]


@dataclasses.dataclass
class Point:
    x: int
    y: int


class Probe:
    """Shared by a test and the service it runs, to observe the handler's side."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.cancelled = asyncio.Event()
        self.release = asyncio.Event()
        self.seen_deadline: float | None = None
        self.produced = 0
        self.stream_closed = asyncio.Event()  # a stream handler was stopped before its end


class Greeter(Service, name="greeter"):
    def __init__(self, probe: Probe | None = None) -> None:
        self.probe = probe or Probe()

    @rpc
    async def hello(self, name: str) -> str:
        return f"hello {name}"

    @rpc
    async def echo(self, item: Item) -> Item:
        return item

    @rpc
    async def move(self, p: Point, dx: int = 1) -> Point:
        return Point(p.x + dx, p.y)

    @rpc
    async def sleep(self, seconds: float) -> str:
        await asyncio.sleep(seconds)
        return "slept"

    @rpc
    async def wait(self) -> str:
        """Blocks until the test releases it; records cancellation."""
        self.probe.started.set()
        try:
            await self.probe.release.wait()
        except asyncio.CancelledError:
            self.probe.cancelled.set()
            raise
        return "released"

    @rpc
    async def fail(self, code: int, message: str) -> None:
        raise RpcError(StatusCode(code), message, {"hint": "details survive"})

    @rpc
    async def crash(self) -> None:
        raise ValueError("boom")

    @rpc
    async def whoami(self) -> dict[str, str | int | float | bool | None]:
        ctx = current_context()
        assert ctx is not None
        return dict(ctx.metadata)

    @rpc
    async def remaining(self) -> float | None:
        ctx = current_context()
        assert ctx is not None
        return ctx.time_remaining()

    @rpc
    async def count(self, n: int) -> AsyncIterator[int]:
        finished = False
        try:
            for i in range(n):
                self.probe.produced = i + 1
                yield i
            finished = True
        finally:
            if not finished:  # closed or cancelled by the server before the last item
                self.probe.stream_closed.set()

    @rpc
    async def count_then_fail(self, n: int) -> AsyncIterator[int]:
        for i in range(n):
            yield i
        raise RpcError(StatusCode.ABORTED, "stream broke")

    @rpc
    async def big(self, size: int) -> bytes:
        return b"x" * size

    @rpc
    async def pid(self) -> int:
        return os.getpid()


class Relay(Service, name="relay"):
    """Calls Greeter.remaining from inside a handler: the nested call inherits the deadline."""

    def __init__(self, target: str = "") -> None:
        self.target = target or os.environ.get("GREETER_TARGET", "")

    @rpc
    async def inner_remaining(self) -> list[float | None]:
        client = Client(target=self.target, middleware=[], timeout=30.0)
        try:
            outer = current_context()
            assert outer is not None
            before = outer.time_remaining()  # measured before the nested call, which can only have less
            inner = await client.proxy(Greeter).remaining()
            return [before, inner]
        finally:
            await client.close()


class Who(Service, name="who"):
    """Answers with its label: discovery tests see which instance served a call."""

    def __init__(self, label: str) -> None:
        self.label = label

    @rpc
    async def am_i(self) -> str:
        return self.label

    @rpc
    async def slow(self, seconds: float) -> str:
        await asyncio.sleep(seconds)
        return self.label


handler_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("handler_var", default=None)
"""A context variable that Quirks sets in one call and reads in another."""


class Quirks(Service, name="quirks"):
    """Handlers that use asyncio the way application code does: timeouts, task groups, context
    variables, an awaited future that was cancelled, keyword-only arguments, streams."""

    def __init__(self) -> None:
        self.stream_closed = asyncio.Event()

    @rpc
    async def with_timeout(self) -> str:
        async with asyncio.timeout(5):
            await asyncio.sleep(0)
        return "ok"

    @rpc
    async def with_taskgroup(self) -> int:
        async with asyncio.TaskGroup() as tg:
            t = tg.create_task(asyncio.sleep(0, result=7))
        return t.result()

    @rpc
    async def set_var(self, value: str) -> None:
        handler_var.set(value)  # a handler-local setting, as any Task-per-call server would isolate

    @rpc
    async def get_var(self) -> str | None:
        return handler_var.get()

    @rpc
    async def await_cancelled_future(self) -> str:
        # e.g. a shared single-flight future whose owner was cancelled: raises CancelledError
        # although nobody cancelled *this* call.
        fut = asyncio.get_running_loop().create_future()
        fut.cancel()
        await fut
        return "unreachable"

    @rpc
    async def add_kw(self, a: int, *, b: int = 2) -> int:
        return a + b

    @rpc
    async def hang(self) -> AsyncIterator[int]:
        await asyncio.Event().wait()
        yield 0

    @rpc
    async def ticks(self, n: int) -> AsyncIterator[int]:
        try:
            for i in range(n):
                yield i
        finally:
            self.stream_closed.set()
