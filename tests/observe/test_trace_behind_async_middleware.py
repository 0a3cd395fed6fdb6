"""Review of the binary trace context: the trace a server starts is lost behind an async middleware.

``Server._dispatch`` (and ``_run_stream``) copy ``call.trace`` into ``Context.trace`` right after
``handler(call)`` returns, i.e. after only the synchronous part of the middleware chain has run.
When a middleware that is an ``async def`` (or the access log with its logger on) comes before the
tracing middleware, ``tracing.serve`` has not run yet at that point: the unsampled root it then
starts never reaches ``Context.trace``, so the handler's log lines carry no ids and its own calls
start unrelated traces. Before the change the context lived in the call's metadata dict, which the
handler's Context shares, so the order of the chain did not matter.
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


class Seen(Service, name="trrev_order_seen"):
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
            got = [x async for x in client.stream("trrev_order_seen", "ticks", {"n": 1})]
    ((trace, ids),) = got
    assert trace is not None and tracing.valid_context(trace)
    assert ids == [trace[:16].hex(), trace[16:24].hex()]
