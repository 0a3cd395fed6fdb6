"""Each request starts or continues a trace whose calls are its children; metrics per route and
status; X-Request-ID in and out (test_http.py)."""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased
from prometheus_client import CollectorRegistry

from meshkit import Server, rpc
from meshkit.gateway import GatewayApp, GatewayServer, parse
from meshkit.gateway.metrics import GatewayMetrics
from meshkit.observe import tracing
from tests.gateway.helpers import http_client, orders_config, serving
from tests.gateway.services import Orders

PARENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN = "00f067aa0ba902b7"


def _provider() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ParentBased(ALWAYS_ON))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def _probe(seen: list[str | None]) -> Orders:
    """An Orders whose ``get`` appends to ``seen`` the trace id it runs in."""

    class Probe(Orders, name="orders"):
        @rpc
        async def get(self, order_id: int):  # type: ignore[no-untyped-def, override]
            seen.append(tracing.current_ids()[0] if tracing.current_ids() else None)  # type: ignore[index]
            return await super().get(order_id)

    return Probe()


def _traced(provider: TracerProvider) -> dict[str, Any]:
    """serving()'s arguments for a backend and a gateway that both trace to ``provider``."""
    return {
        "middleware": [tracing.middleware("server", provider)],
        "client_middleware": [tracing.middleware("client", provider)],
        "tracer_provider": provider,
    }


async def test_a_request_continues_the_callers_trace_down_to_the_service() -> None:
    provider, exporter = _provider()
    async with serving(**_traced(provider)) as gw, http_client(gw) as http:
        r = await http.get("/orders/1", headers={"traceparent": f"00-{PARENT_TRACE}-{PARENT_SPAN}-01"})
    assert r.status_code == 200
    spans = {s.kind.name: s for s in exporter.get_finished_spans()}
    assert set(spans) == {"SERVER", "CLIENT"} or len(exporter.get_finished_spans()) == 3
    http_span = next(s for s in exporter.get_finished_spans() if s.name == "GET /orders/{order_id}")
    client = next(s for s in exporter.get_finished_spans() if s.kind.name == "CLIENT")
    served = next(s for s in exporter.get_finished_spans() if s.name == "orders/get")
    assert {format(s.context.trace_id, "032x") for s in (http_span, client, served)} == {PARENT_TRACE}
    assert http_span.parent is not None and format(http_span.parent.span_id, "016x") == PARENT_SPAN
    assert client.parent is not None and client.parent.span_id == http_span.context.span_id
    assert served.parent is not None and served.parent.span_id == client.context.span_id
    assert http_span.attributes is not None and http_span.attributes["http.response.status_code"] == 200


async def test_an_unsampled_caller_gets_no_span_but_its_trace_id_travels_on() -> None:
    provider, exporter = _provider()
    seen: list[str | None] = []
    async with serving([_probe(seen)], **_traced(provider)) as gw, http_client(gw) as http:
        r = await http.get("/orders/1", headers={"traceparent": f"00-{PARENT_TRACE}-{PARENT_SPAN}-00"})
    assert r.status_code == 200
    assert exporter.get_finished_spans() == ()
    assert seen == [PARENT_TRACE]


async def test_metrics_count_requests_by_route_template_and_status() -> None:
    registry = CollectorRegistry()
    async with serving(metrics=GatewayMetrics(registry)) as gw, http_client(gw) as http:
        for path in ("/orders/1", "/orders/1", "/orders/9", "/nowhere", "/orders/x"):
            await http.get(path)
    route = "GET /orders/{order_id}"
    value = registry.get_sample_value
    assert value("meshkit_gateway_requests_total", {"route": route, "status": "200"}) == 2
    assert value("meshkit_gateway_requests_total", {"route": route, "status": "404"}) == 1
    assert value("meshkit_gateway_requests_total", {"route": route, "status": "400"}) == 1
    assert value("meshkit_gateway_requests_total", {"route": "unmatched", "status": "404"}) == 1
    assert value("meshkit_gateway_request_duration_seconds_count", {"route": route}) == 4


async def test_without_trust_an_incoming_sampled_flag_is_not_obeyed_but_the_trace_continues() -> None:
    provider, exporter = _provider()
    seen: list[str | None] = []
    untrusting = "trust_traceparent = false"
    async with Server([_probe(seen)], middleware=[tracing.middleware("server", provider)]) as backend:
        for config, ratio in ((untrusting, 0.0), ("", 0.0)):
            app = GatewayApp(
                parse(orders_config(backend.address, gateway=config)),
                client_middleware=[tracing.middleware("client", provider)],
                tracer_provider=provider,
                trace_ratio=ratio,
            )
            async with GatewayServer(app) as gw, http_client(gw) as http:
                r = await http.get("/orders/1", headers={"traceparent": f"00-{PARENT_TRACE}-{PARENT_SPAN}-01"})
                assert r.status_code == 200
            if config is untrusting:
                assert exporter.get_finished_spans() == (), "a caller's sampled flag forced spans"
    # Trusted: the same request is traced (ratio 0 does not matter: the caller decided).
    assert any(s.name == "GET /orders/{order_id}" for s in exporter.get_finished_spans())
    assert seen == [PARENT_TRACE, PARENT_TRACE]  # the trace id travels on either way
