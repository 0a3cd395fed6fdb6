"""Two real processes (``meshkit run`` order and inventory, JSON logs, OTLP traces) and a traced
caller: every process's spans reach the OTLP receiver in one trace, and each process's access-log
line of the call carries that trace id."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from meshkit import Client
from meshkit.demo.services import Order, OrderRequest
from meshkit.observe import tracing
from meshkit.testing import ChildProcess, spawn
from tests.observe.otlp_receiver import OtlpReceiver

ROOT = Path(__file__).resolve().parents[2]


def start(args: list[str], env: dict[str, str]) -> tuple[ChildProcess, str]:
    """``meshkit run ARGS`` with JSON logs (on stderr, kept with its output) and its address."""
    proc = spawn(
        [sys.executable, "-m", "meshkit", "run", *args, "--port", "0", "--log-format", "json", "--trace", "otlp"],
        ready=r"on (127\.0\.0\.1:\d+)",
        stderr="capture",
        keep=100_000,
        cwd=ROOT,
        env=env,
        timeout=30,
    )
    assert proc.ready_match is not None
    return proc, proc.ready_match[1]


def stop(proc: ChildProcess) -> list[dict[str, object]]:
    proc.stop(grace=30)
    return [json.loads(line) for line in proc.tail() if line.startswith("{")]


@pytest.mark.slow
async def test_one_trace_id_in_every_process_logs_and_spans(receiver: OtlpReceiver) -> None:
    otel = {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": receiver.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "100"}
    inventory, inventory_at = start(["meshkit.demo.services:Inventory"], {**otel, "OTEL_SERVICE_NAME": "inventory"})
    try:
        env = {**otel, "OTEL_SERVICE_NAME": "order", "INVENTORY_TARGET": inventory_at}
        order, order_at = start(["meshkit.demo.services:Order"], env)
        try:
            edge = TracerProvider(resource=Resource.create({"service.name": "edge"}))
            edge.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=receiver.endpoint)))
            async with Client(target=order_at, middleware=[tracing.middleware("client", edge)]) as client:
                result = await client.proxy(Order).place(OrderRequest(customer="ann", sku="fig", qty=2))
            assert result.sku == "fig"
            edge.force_flush()
        finally:
            order_logs = stop(order)
    finally:
        inventory_logs = stop(inventory)
    (root,) = [s for s in receiver.spans if s.service == "edge"]
    trace_id = root.trace_id
    services = {s.service for s in receiver.spans if s.trace_id == trace_id}
    assert services == {"edge", "order", "inventory"}, receiver.spans
    for logs, method in ((order_logs, "place"), (inventory_logs, "reserve")):
        access = [line for line in logs if line.get("logger") == "meshkit.access" and line.get("method") == method]
        assert access, logs
        assert {line.get("trace_id") for line in access} == {trace_id}


@pytest.mark.slow
async def test_a_default_client_inside_a_traced_handler_continues_the_trace(receiver: OtlpReceiver) -> None:
    """Tracing configured in a process leads every default chain made there: the handler's own
    ``Client()`` makes a client span under the server span and the next process continues it."""
    otel = {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": receiver.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "100"}
    back, back_at = start(["tests.observe.chain_services:Back"], {**otel, "OTEL_SERVICE_NAME": "back"})
    try:
        front, front_at = start(
            ["tests.observe.chain_services:Front"], {**otel, "OTEL_SERVICE_NAME": "front", "BACK_TARGET": back_at}
        )
        try:
            async with Client(target=front_at, middleware=[]) as client:
                assert await client.call("front", "ask", {"n": 1}) == 2
        finally:
            stop(front)
    finally:
        stop(back)
    spans = {(s.service, s.kind): s for s in receiver.spans}
    front_server, front_client, back_server = spans[("front", 2)], spans[("front", 3)], spans[("back", 2)]
    assert front_client.trace_id == front_server.trace_id == back_server.trace_id
    assert front_client.parent_span_id == front_server.span_id
    assert back_server.parent_span_id == front_client.span_id
