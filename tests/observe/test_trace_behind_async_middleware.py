"""The trace a server starts reaches the handler wherever the tracing middleware stands in the chain:
behind an ``async def`` middleware (auth, a timer...), a unary or streaming handler still sees the
context in ``Context.trace`` and its ids in ``tracing.current_ids()``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from opentelemetry.sdk.trace import TracerProvider

from meshkit import Client, Server, Service, current_context, rpc
from meshkit.observe import tracing
from meshkit.rpc.middleware import Call, Handler


def _outer(next_handler: Handler) -> Handler:
    """An ordinary async middleware (auth, a timer...), put ahead of tracing."""

    async def handler(call: Call) -> Any:
        return await next_handler(call)

    return handler


def _seen() -> tuple[bytes | None, list[str] | None]:
    ctx = current_context()
    assert ctx is not None
    ids = tracing.current_ids()
    return ctx.trace, None if ids is None else list(ids)


class Seen(Service, name="seen_behind_middleware"):
    @rpc
    async def unary(self) -> tuple[bytes | None, list[str] | None]:
        return _seen()

    @rpc
    async def ticks(self, n: int) -> AsyncIterator[tuple[bytes | None, list[str] | None]]:
        for _ in range(n):
            yield _seen()


def _chain() -> list[Any]:
    return [_outer, tracing.middleware("server", TracerProvider(), ratio=0.0)]


async def test_the_trace_started_here_reaches_a_unary_handler_behind_an_async_middleware() -> None:
    async with Server([Seen()], "127.0.0.1", middleware=_chain()) as srv:
        async with Client(target=srv.address, middleware=[]) as client:
            trace, ids = await client.proxy(Seen).unary()
    assert trace is not None and tracing.valid_context(trace)
    assert ids == [trace[:16].hex(), trace[16:24].hex()]


async def test_the_trace_started_here_reaches_a_stream_handler_behind_an_async_middleware() -> None:
    async with Server([Seen()], "127.0.0.1", middleware=_chain()) as srv:
        async with Client(target=srv.address, middleware=[]) as client:
            got = [x async for x in client.stream("seen_behind_middleware", "ticks", {"n": 1})]
    ((trace, ids),) = got
    assert trace is not None and tracing.valid_context(trace)
    assert ids == [trace[:16].hex(), trace[16:24].hex()]
