"""A textual ``traceparent`` is trusted only when it is valid W3C: a malformed one does not force
sampling and is not forwarded (the handler's own calls carry a valid context of their own); an
unsampled one creates no span; and a streaming call made from a handler forwards the trace like a
unary one."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased

from meshkit import Client, Server, Service, rpc
from meshkit.observe import tracing
from meshkit.rpc.context import current_context

W3C = re.compile(r"^00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}$")


def _provider() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ParentBased(ALWAYS_ON))  # as tracing.configure() sets it
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def _received() -> str | None:
    """The trace context this call arrived with, as a traceparent (it travels in binary)."""
    binary = current_context().trace  # type: ignore[union-attr]
    return None if binary is None else tracing.traceparent(binary)


class Back(Service, name="traceparent_back"):
    @rpc
    async def seen(self) -> str | None:
        return _received()

    @rpc
    async def has_span(self) -> bool:
        return trace.get_current_span().get_span_context().is_valid

    @rpc
    async def ticks(self, n: int) -> AsyncIterator[str | None]:
        value = _received()
        for _ in range(n):
            yield value


class Front(Service, name="traceparent_front"):
    def __init__(self, back: str, provider: TracerProvider) -> None:
        self.client = Client(target=back, middleware=[tracing.middleware("client", provider, ratio=0.0)])

    @rpc
    async def forward(self) -> str | None:
        return await self.client.proxy(Back).seen()  # type: ignore[no-any-return]

    @rpc
    async def forward_stream(self) -> str | None:
        got = [x async for x in self.client.stream("traceparent_back", "ticks", {"n": 1})]
        return got[0]  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    "bad",
    [
        "not-a-traceparent",
        "00-" + "A" * 32 + "-" + "B" * 16 + "-01",  # uppercase is invalid in W3C
        "ff-" + "a" * 32 + "-" + "b" * 16 + "-01",  # version ff is invalid
    ],
)
async def test_malformed_traceparent_does_not_force_sampling(bad: str) -> None:
    provider, exporter = _provider()
    async with Server([Back()], middleware=[tracing.middleware("server", provider, ratio=0.0)]) as server:
        async with Client(target=server.address, middleware=[], metadata={"traceparent": bad}) as client:
            await client.proxy(Back).seen()
    assert exporter.get_finished_spans() == ()


@pytest.mark.parametrize(
    "bad",
    [
        "x-00",
        "00-" + "A" * 32 + "-" + "B" * 16 + "-00",
        "ff-" + "a" * 32 + "-" + "b" * 16 + "-00",
        "00-" + "0" * 32 + "-" + "0" * 16 + "-00",
    ],
)
async def test_invalid_unsampled_traceparent_is_not_forwarded(bad: str) -> None:
    provider, _ = _provider()
    async with Server([Back()]) as back:
        front = Front(back.address, provider)
        async with Server([front], middleware=[tracing.middleware("server", provider, ratio=0.0)]) as fs:
            async with Client(target=fs.address, middleware=[], metadata={"traceparent": bad}) as client:
                downstream = await client.proxy(Front).forward()
        await front.client.close()
    assert downstream is not None and W3C.match(downstream), downstream


async def test_unsampled_traceparent_with_random_flag_creates_no_span() -> None:
    provider, _ = _provider()
    unsampled = "00-" + "a" * 32 + "-" + "b" * 16 + "-02"  # sampled bit clear
    async with Server([Back()], middleware=[tracing.middleware("server", provider, ratio=0.0)]) as server:
        async with Client(target=server.address, middleware=[], metadata={"traceparent": unsampled}) as client:
            assert await client.proxy(Back).has_span() is False


async def test_streaming_call_from_a_handler_forwards_the_trace() -> None:
    provider, _ = _provider()
    tp = "00-" + "c" * 32 + "-" + "d" * 16 + "-00"
    async with Server([Back()]) as back:
        front = Front(back.address, provider)
        async with Server([front], middleware=[tracing.middleware("server", provider, ratio=0.0)]) as fs:
            async with Client(target=fs.address, middleware=[], metadata={"traceparent": tp}) as client:
                downstream = await client.proxy(Front).forward_stream()
        await front.client.close()
    assert downstream is not None and "c" * 32 in downstream
