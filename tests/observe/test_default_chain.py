"""``default_chain`` is the one place the standard chain is assembled: the same middleware, in
the same order, as the chains ``meshkit run``, ``meshkit registry`` and ``meshkit gateway`` built
by hand before it, and tracing outermost, then metrics, then the access log."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from meshkit import Client, Middleware, Server
from meshkit.observe import RpcMetrics, default_chain, default_metrics, tracing
from meshkit.rpc.access_log import access_log
from tests.policy.services import Stock


def shape(chain: list[Middleware]) -> list[tuple[str, str, Any]]:
    """Each middleware as (module, function, what it is bound to): the logger of an access
    log, the per-side stats of a metrics middleware, the side and tracer of a tracing one."""
    out = []
    for mw in chain:
        bound = dict(zip(mw.__code__.co_freevars, (c.cell_contents for c in mw.__closure__ or ()), strict=True))
        if "logger" in bound:
            detail: Any = bound["logger"].name
        elif "stats" in bound:
            detail = id(bound["stats"])
        else:
            detail = (bound["server"], type(bound["tracer"]).__name__)
        out.append((mw.__module__, mw.__qualname__, detail))
    return out


@pytest.mark.parametrize("metrics", [True, False])
@pytest.mark.parametrize("traced", [True, False])
def test_meshkit_run_chain(traced: bool, metrics: bool) -> None:
    by_hand: list[Middleware] = [access_log("meshkit.access")]
    if metrics:
        by_hand.insert(0, default_metrics().middleware("server"))
    if traced:
        by_hand.insert(0, tracing.middleware("server"))
    assert shape(default_chain("server", metrics=metrics, tracing=traced)) == shape(by_hand)


def test_meshkit_registry_chain_is_metrics_only() -> None:
    by_hand = [default_metrics().middleware("server")]
    assert shape(default_chain("server", tracing=False, access_log=False)) == shape(by_hand)


def test_meshkit_gateway_chain() -> None:
    provider = TracerProvider()
    by_hand = [tracing.middleware("client", provider), default_metrics().middleware("client")]
    chain = default_chain("client", tracing=True, tracer_provider=provider, access_log=False)
    assert shape(chain) == shape(by_hand)


def test_each_side_gets_its_own_pieces() -> None:
    for side, logger in (("server", "meshkit.access"), ("client", "meshkit.access.client")):
        by_hand = [tracing.middleware(side), default_metrics().middleware(side), access_log(logger)]
        assert shape(default_chain(side, tracing=True)) == shape(by_hand)
    metrics = RpcMetrics(CollectorRegistry())
    assert shape(default_chain("client", metrics=metrics, tracing=False)) == shape(
        [metrics.middleware("client"), access_log("meshkit.access.client")]
    )
    with pytest.raises(ValueError, match="side is 'server' or 'client'"):
        default_chain("edge")


def test_tracing_is_on_by_default_only_when_configured_or_given_a_provider() -> None:
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        assert len(default_chain("server", access_log=False)) == 1  # metrics alone
    assert len(default_chain("server", access_log=False, tracer_provider=TracerProvider())) == 2


async def test_tracing_wraps_metrics_which_wrap_the_access_log(caplog: pytest.LogCaptureFixture) -> None:
    """The access-log line is written inside the span and before the metrics count the call;
    the span ends after they have."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    registry = CollectorRegistry()
    metrics = RpcMetrics(registry)
    counted_at_span_end: list[float | None] = []

    def served() -> float | None:
        return registry.get_sample_value(
            "meshkit_rpc_server_requests_total", {"service": "stock", "method": "peek", "code": "OK"}
        )

    class Watch(SimpleSpanProcessor):
        def on_end(self, span: Any) -> None:
            if span.kind == trace.SpanKind.SERVER:
                counted_at_span_end.append(served())
            super().on_end(span)

    provider.add_span_processor(Watch(exporter))
    seen: list[tuple[bool, float | None]] = []

    class Probe(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append((trace.get_current_span().is_recording(), served()))

    probe = Probe()
    logging.getLogger("meshkit.access").addHandler(probe)
    try:
        with caplog.at_level(logging.INFO, logger="meshkit.access"):
            chain = default_chain("server", metrics=metrics, tracer_provider=provider)
            async with Server([Stock()], middleware=chain) as server:
                async with Client(target=server.address, middleware=[]) as client:
                    assert await client.proxy(Stock).peek("a") == "a"
    finally:
        logging.getLogger("meshkit.access").removeHandler(probe)
    assert seen == [(True, None)]  # inside the span; not counted yet
    assert counted_at_span_end == [1.0]
