"""A binary trace context whose trace id or span id is all zeros (refused by protocol.md, "Trace
context") never reaches the handler, also when the server samples a new trace: the handler sees the
server span's context, and its own calls continue the server span.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased
from opentelemetry.trace import SpanKind

from meshkit import Client, Server, Service, current_context, rpc
from meshkit.observe import tracing
from meshkit.rpc.middleware import Call, Handler, Middleware

ZERO_TRACE_UNSAMPLED = bytes(16) + b"\x07" * 8 + b"\x00"
ZERO_TRACE_SAMPLED = bytes(16) + b"\x07" * 8 + b"\x01"
ZERO_SPAN_UNSAMPLED = b"\x07" * 16 + bytes(8) + b"\x00"


def _provider() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ParentBased(ALWAYS_ON))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def _forcing(context: bytes) -> Middleware:
    """Client middleware that sends ``context`` as the binary trace context of every call."""

    def middleware(next_handler: Handler) -> Handler:
        def handler(call: Call) -> Awaitable[Any]:
            call.trace = context
            return next_handler(call)

        return handler

    return middleware


class Back(Service, name="sampling_back"):
    @rpc
    async def seen(self) -> bytes | None:
        ctx = current_context()
        assert ctx is not None
        return ctx.trace


class Front(Service, name="sampling_front"):
    def __init__(self, back: str, provider: TracerProvider) -> None:
        self.client = Client(target=back, middleware=[tracing.middleware("client", provider, ratio=0.0)])

    @rpc
    async def own(self) -> bytes | None:
        ctx = current_context()
        assert ctx is not None
        return ctx.trace

    @rpc
    async def forward(self) -> bytes | None:
        return await self.client.proxy(Back).seen()


@pytest.mark.parametrize(
    "bad",
    [ZERO_TRACE_UNSAMPLED, ZERO_TRACE_SAMPLED, ZERO_SPAN_UNSAMPLED],
    ids=["zero-trace-unsampled", "zero-trace-sampled", "zero-span-unsampled"],
)
async def test_a_rejected_context_does_not_reach_the_handler_when_the_server_samples(bad: bytes) -> None:
    provider, _ = _provider()
    front = Front("127.0.0.1:1", provider)  # its client is not used here
    try:
        async with Server([front], "127.0.0.1", middleware=[tracing.middleware("server", provider, ratio=1.0)]) as srv:
            async with Client(target=srv.address, middleware=[_forcing(bad)]) as client:
                seen = await client.proxy(Front).own()
    finally:
        await front.client.close()
    assert seen != bad


@pytest.mark.parametrize("bad", [ZERO_TRACE_UNSAMPLED, ZERO_SPAN_UNSAMPLED], ids=["zero-trace", "zero-span"])
async def test_nested_calls_continue_the_server_span_after_a_rejected_context(bad: bytes) -> None:
    provider, exporter = _provider()
    async with Server([Back()], "127.0.0.1", middleware=[]) as back:
        front = Front(back.address, provider)
        try:
            async with Server(
                [front], "127.0.0.1", middleware=[tracing.middleware("server", provider, ratio=1.0)]
            ) as srv:
                async with Client(target=srv.address, middleware=[_forcing(bad)]) as client:
                    downstream = await client.proxy(Front).forward()
        finally:
            await front.client.close()
    (server_span,) = [s for s in exporter.get_finished_spans() if s.kind is SpanKind.SERVER]
    assert downstream is not None and tracing.valid_context(downstream), downstream
    assert downstream[:16] == server_span.context.trace_id.to_bytes(16, "big")
