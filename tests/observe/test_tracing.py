"""Tracing across three hops (client -> front -> back), exported over real OTLP/HTTP to a receiver
that decodes the protobuf: one trace, the right parent/child links, RPC attributes."""

from __future__ import annotations

import asyncio
import logging

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

from meshkit import Client, RpcError, Server, Service, StatusCode, rpc
from meshkit.observe import tracing
from meshkit.observe.logs import JsonFormatter, TraceIds
from tests.observe.otlp_receiver import OtlpReceiver


class Back(Service, name="back"):
    @rpc
    async def work(self, n: int) -> int:
        logging.getLogger("tests.back").info("working on %d", n)
        if n < 0:
            raise RpcError(StatusCode.INVALID_ARGUMENT, "n must be >= 0")
        return n * 2


class Front(Service, name="front"):
    def __init__(self, back: str, provider: TracerProvider) -> None:
        self.client = Client(target=back, middleware=[tracing.middleware("client", provider)])

    @rpc
    async def handle(self, n: int) -> int:
        # A task started by the handler is inside the trace too (asyncio copies the context).
        return await asyncio.create_task(self.client.proxy(Back).work(n)) + 1


def provider_for(receiver: OtlpReceiver, name: str, ratio: float = 1.0) -> TracerProvider:
    p = TracerProvider(resource=Resource.create({"service.name": name}), sampler=ParentBased(TraceIdRatioBased(ratio)))
    # Batch: its exports run in the SDK's thread, as in production (never on the event loop).
    p.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=receiver.endpoint)))
    return p


async def test_three_hops_make_one_trace_with_the_right_parents(receiver: OtlpReceiver) -> None:
    edge, front_p, back_p = (provider_for(receiver, n) for n in ("edge", "front", "back"))
    back = Server([Back()], middleware=[tracing.middleware("server", back_p)])
    async with back:
        front = Front(back.address, front_p)
        async with Server([front], middleware=[tracing.middleware("server", front_p)]) as fs:
            async with Client(target=fs.address, middleware=[tracing.middleware("client", edge)]) as client:
                assert await client.proxy(Front).handle(20) == 41
        await front.client.close()
    for p in (edge, front_p, back_p):
        p.force_flush()
    spans = {(s.service, s.kind): s for s in receiver.spans}
    assert len(receiver.spans) == 4, receiver.spans
    client_span = spans["edge", 3]  # SPAN_KIND_CLIENT
    front_server = spans["front", 2]  # SPAN_KIND_SERVER
    front_client = spans["front", 3]
    back_server = spans["back", 2]
    assert len({s.trace_id for s in receiver.spans}) == 1
    assert client_span.parent_span_id == ""
    assert front_server.parent_span_id == client_span.span_id
    assert front_client.parent_span_id == front_server.span_id
    assert back_server.parent_span_id == front_client.span_id
    assert client_span.name == front_server.name == "front/handle"
    assert back_server.name == "back/work"
    assert back_server.attributes["rpc.system"] == "meshkit"
    assert (back_server.attributes["rpc.service"], back_server.attributes["rpc.method"]) == ("back", "work")
    assert client_span.attributes["network.peer.address"] == "127.0.0.1"


async def test_errors_mark_the_spans_and_unsampled_traces_export_nothing(receiver: OtlpReceiver) -> None:
    p = provider_for(receiver, "edge")
    async with Server([Back()], middleware=[tracing.middleware("server", p)]) as server:
        async with Client(target=server.address, middleware=[tracing.middleware("client", p)]) as client:
            with pytest.raises(RpcError):
                await client.proxy(Back).work(-1)
    p.force_flush()
    assert {s.attributes["rpc.meshkit.status_code"] for s in receiver.spans} == {int(StatusCode.INVALID_ARGUMENT)}
    receiver.spans.clear()
    never = provider_for(receiver, "edge", ratio=0.0)
    async with Server([Back()], middleware=[tracing.middleware("server", never)]) as server:
        async with Client(target=server.address, middleware=[tracing.middleware("client", never)]) as client:
            for i in range(10):
                assert await client.proxy(Back).work(i) == 2 * i
    never.force_flush()
    assert receiver.spans == []


async def test_an_unsampled_call_costs_no_span_but_keeps_one_trace_id_downstream(
    receiver: OtlpReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    """Ratio 0 where the trace starts: no span anywhere, yet the handler two hops down logs the
    trace id the edge chose (log correlation without tracing costs)."""
    p = provider_for(receiver, "edge")
    caplog.handler.addFilter(TraceIds())
    caplog.set_level(logging.INFO, logger="tests.back")
    async with Server([Back()], middleware=[tracing.middleware("server", p)]) as back:
        front = Front(back.address, p)
        async with Server([front], middleware=[tracing.middleware("server", p)]) as fs:
            async with Client(target=fs.address, middleware=[tracing.middleware("client", p, ratio=0.0)]) as c:
                assert await c.proxy(Front).handle(1) == 3
        await front.client.close()
    p.force_flush()
    assert receiver.spans == []
    (record,) = [r for r in caplog.records if r.name == "tests.back"]
    assert isinstance(record.trace_id, str) and len(record.trace_id) == 32 and record.trace_id != "0" * 32


async def test_log_lines_of_a_traced_call_carry_its_trace_id(
    receiver: OtlpReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    p = provider_for(receiver, "edge")
    formatter = JsonFormatter()
    caplog.handler.addFilter(TraceIds())  # stamps the ids when the line is logged
    caplog.set_level(logging.INFO, logger="tests.back")
    async with Server([Back()], middleware=[tracing.middleware("server", p)]) as server:
        async with Client(target=server.address, middleware=[tracing.middleware("client", p)]) as client:
            await client.proxy(Back).work(3)
    p.force_flush()
    import json

    (line,) = [json.loads(formatter.format(r)) for r in caplog.records if r.name == "tests.back"]
    (server_span,) = [s for s in receiver.spans if s.kind == 2]
    assert line["trace_id"] == server_span.trace_id and line["span_id"] == server_span.span_id
    assert line["message"] == "working on 3" and line["level"] == "INFO"
