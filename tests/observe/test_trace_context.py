"""The binary trace context the tracing middleware sends and reads, and its text form."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased

from meshkit import Client, Server, Service, current_context, rpc
from meshkit.observe import tracing
from meshkit.rpc.middleware import Call, Handler

TEXT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
BINARY = bytes.fromhex("0af7651916cd43dd8448eb211c80319c" + "b7ad6b7169203331" + "01")


def test_text_and_binary_forms_round_trip() -> None:
    assert tracing.context_from_traceparent(TEXT) == BINARY
    assert tracing.traceparent(BINARY) == TEXT
    assert tracing.valid_context(BINARY)


@pytest.mark.parametrize(
    "bad",
    [
        "00-" + "0" * 32 + "-b7ad6b7169203331-01",  # zero trace id
        "00-0af7651916cd43dd8448eb211c80319c-" + "0" * 16 + "-01",  # zero span id
        TEXT.upper(),
        TEXT + "-extra",
        "ff" + TEXT[2:],
        None,
        42,
    ],
)
def test_invalid_text_gives_no_context(bad: object) -> None:
    assert tracing.context_from_traceparent(bad) is None


@pytest.mark.parametrize(
    "bad", [bytes(25), bytes(16) + b"\x01" * 9, b"\x01" * 16 + bytes(8) + b"\x01", BINARY[:24], BINARY + b"\x00"]
)
def test_invalid_binary_contexts_are_recognised(bad: bytes) -> None:
    assert not tracing.valid_context(bad)


class Echo(Service, name="tc_echo"):
    @rpc
    async def trace(self) -> bytes | None:
        ctx = current_context()
        assert ctx is not None
        return ctx.trace


def _forcing(context: bytes) -> object:
    def middleware(next_handler: Handler) -> Handler:
        def handler(call: Call) -> object:
            call.trace = context
            return next_handler(call)

        return handler

    return middleware


def _provider() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ParentBased(ALWAYS_ON))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


@pytest.mark.parametrize(
    "bad", [bytes(24) + b"\x01", bytes(16) + b"\x07" * 8 + b"\x01", b"\x07" * 16 + bytes(8) + b"\x01"]
)
async def test_a_zero_id_context_is_not_honoured(bad: bytes) -> None:
    """A sampled context with a zero id neither forces a span nor reaches the handler: the server
    starts a trace of its own (here unsampled, ratio 0)."""
    provider, exporter = _provider()
    async with Server([Echo()], middleware=[tracing.middleware("server", provider, ratio=0.0)]) as srv:
        async with Client(target=srv.address, middleware=[_forcing(bad)]) as client:  # type: ignore[list-item]
            seen = await client.proxy(Echo).trace()
    assert exporter.get_finished_spans() == ()
    assert seen is not None and seen != bad and tracing.valid_context(seen) and seen[24] == 0


async def test_a_textual_traceparent_is_continued() -> None:
    """A caller that speaks only text W3C (no TRACE flag): the server span joins its trace."""
    provider, exporter = _provider()
    async with Server([Echo()], middleware=[tracing.middleware("server", provider)]) as srv:
        async with Client(target=srv.address, middleware=[], metadata={"traceparent": TEXT}) as client:
            await client.proxy(Echo).trace()
    (span,) = exporter.get_finished_spans()
    assert format(span.context.trace_id, "032x") == TEXT[3:35]
    assert span.parent is not None and format(span.parent.span_id, "016x") == TEXT[36:52]


async def test_a_sampled_client_sends_its_span_as_the_parent() -> None:
    provider, exporter = _provider()
    async with Server([Echo()], middleware=[]) as srv:
        async with Client(target=srv.address, middleware=[tracing.middleware("client", provider)]) as client:
            seen = await client.proxy(Echo).trace()
    (span,) = exporter.get_finished_spans()
    assert seen is not None and seen[:24] == span.context.trace_id.to_bytes(16, "big") + span.context.span_id.to_bytes(
        8, "big"
    )
    assert seen[24] == int(span.context.trace_flags)  # sampled (bit 0), and the SDK's random bit
