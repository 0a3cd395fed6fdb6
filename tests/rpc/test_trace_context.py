"""The binary trace context: set on a client Call, it reaches the handler's context outside the
metadata map (the TRACE flag), for unary calls and streams, and leaves metadata cacheable."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

from meshkit import Client, Server, Service, current_context, rpc
from meshkit.rpc.middleware import Call, Handler


class Seen(Service, name="trace_seen"):
    @rpc
    async def context(self) -> tuple[bytes | None, list[str]]:
        ctx = current_context()
        assert ctx is not None
        return ctx.trace, sorted(ctx.metadata)

    @rpc
    async def ticks(self, n: int) -> AsyncIterator[bytes | None]:
        ctx = current_context()
        assert ctx is not None
        for _ in range(n):
            yield ctx.trace


def _sending(contexts: list[bytes]) -> Any:
    """Client middleware that sends the next of ``contexts`` with each call."""

    def middleware(next_handler: Handler) -> Handler:
        def handler(call: Call) -> Any:
            call.trace = contexts.pop(0)
            return next_handler(call)

        return handler

    return middleware


async def test_the_context_reaches_the_handler_outside_the_metadata() -> None:
    sent = [os.urandom(24) + b"\x01" for _ in range(3)]
    async with Server([Seen()], middleware=[]) as srv:
        async with Client(target=srv.address, middleware=[_sending(list(sent))]) as client:
            got = [await client.proxy(Seen).context() for _ in range(3)]
    assert [trace for trace, _ in got] == sent
    assert all("traceparent" not in keys for _, keys in got)
    assert got[0][1] == ["deadline", "method", "service"]


async def test_a_stream_opening_carries_the_context() -> None:
    sent = os.urandom(24) + b"\x00"
    async with Server([Seen()], middleware=[]) as srv:
        async with Client(target=srv.address, middleware=[_sending([sent])]) as client:
            got = [x async for x in client.stream("trace_seen", "ticks", {"n": 2})]
    assert got == [sent, sent]


async def test_without_a_context_the_handler_sees_none() -> None:
    async with Server([Seen()], middleware=[]) as srv, Client(target=srv.address, middleware=[]) as client:
        trace, _ = await client.proxy(Seen).context()
    assert trace is None


async def test_traced_calls_keep_hitting_the_metadata_cache() -> None:
    # Every call has its own context; the map before it is the same bytes, so it decodes once.
    contexts = [os.urandom(24) + b"\x00" for _ in range(50)]
    async with Server([Seen()], middleware=[]) as srv:
        async with Client(target=srv.address, middleware=[_sending(contexts)], timeout=None) as client:
            for _ in range(50):
                await client.proxy(Seen).context()
        assert len(srv._dispatcher.md_cache) == 1
