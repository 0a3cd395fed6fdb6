"""OpenTelemetry tracing of RPC calls: a CLIENT span per call made, a SERVER span per call
served, W3C ``traceparent``/``tracestate`` carried in frame metadata.

Spans follow OTel's RPC conventions: named ``service/method``, with ``rpc.system = "meshkit"``,
``rpc.service``, ``rpc.method``, ``rpc.meshkit.status_code`` (the gRPC number) and the peer's
address. The server span is the current span while the handler runs, so calls the handler makes
(and tasks it starts: asyncio copies the context) are its children without any code in the
handler. Sampling is the provider's: parent-based ratio by default (``OTEL_TRACES_SAMPLER`` /
``OTEL_TRACES_SAMPLER_ARG`` or ``configure(ratio=…)``), so one decision at the edge holds for
the whole trace.

Cost: without the middleware, nothing; with it and an unsampled call, a context extraction and a
non-recording span.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagators.textmap import Getter, Setter
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from meshkit.errors import RpcError

Handler = Callable[[Any], Awaitable[Any]]
Middleware = Callable[[Handler], Handler]
_PROPAGATOR = TraceContextTextMapPropagator()
SYSTEM = "meshkit"


class _MetadataGetter(Getter[dict[str, Any]]):
    def get(self, carrier: dict[str, Any], key: str) -> list[str] | None:
        value = carrier.get(key)
        return [value] if isinstance(value, str) else None

    def keys(self, carrier: dict[str, Any]) -> list[str]:
        return list(carrier)


class _MetadataSetter(Setter[dict[str, Any]]):
    def set(self, carrier: dict[str, Any], key: str, value: str) -> None:
        carrier[key] = value


_GET = _MetadataGetter()
_SET = _MetadataSetter()


def _attributes(call: Any) -> dict[str, Any]:
    host, _, port = call.peer.rpartition(":")
    attrs: dict[str, Any] = {"rpc.system": SYSTEM, "rpc.service": call.spec.service, "rpc.method": call.spec.name}
    if host:
        attrs["network.peer.address"] = host.strip("[]")
        if port.isdigit():
            attrs["network.peer.port"] = int(port)
    return attrs


def _finish(span: Any, exc: BaseException | None) -> None:
    if exc is None:
        span.set_attribute("rpc.meshkit.status_code", 0)
        return
    if isinstance(exc, RpcError):
        span.set_attribute("rpc.meshkit.status_code", int(exc.code))
        span.set_status(Status(StatusCode.ERROR, f"{exc.code.name}: {exc.message}"))
    elif isinstance(exc, asyncio.CancelledError):
        span.set_attribute("rpc.meshkit.status_code", 1)
        span.set_status(Status(StatusCode.ERROR, "CANCELLED"))
    else:
        span.record_exception(exc)
        span.set_status(Status(StatusCode.ERROR, type(exc).__name__))


def middleware(side: str, provider: trace.TracerProvider | None = None) -> Middleware:
    """The tracing middleware of ``side`` ("server" or "client"); put it first in the chain so
    that the other middleware (the access log) runs inside its span. ``provider`` defaults to
    the global one (``configure`` or the OTel SDK's environment set it)."""
    tracer = (provider or trace.get_tracer_provider()).get_tracer("meshkit")
    server = side == "server"
    kind = SpanKind.SERVER if server else SpanKind.CLIENT

    def wrap(next_handler: Handler) -> Handler:
        async def handler(call: Any) -> Any:
            spec = call.spec
            parent = _PROPAGATOR.extract(call.metadata, getter=_GET) if server else None
            span = tracer.start_span(f"{spec.service}/{spec.name}", context=parent, kind=kind)
            token = otel_context.attach(trace.set_span_in_context(span, parent))
            if not server:
                _PROPAGATOR.inject(call.metadata, setter=_SET)  # the server continues this trace
            error: BaseException | None = None
            try:
                return await next_handler(call)
            except BaseException as exc:
                error = exc
                raise
            finally:
                if span.is_recording():
                    for key, value in _attributes(call).items():  # peer is known only now on a client
                        span.set_attribute(key, value)
                    _finish(span, error)
                span.end()
                otel_context.detach(token)

        return handler

    return wrap


def configure(
    service_name: str,
    exporter: str | None = None,
    endpoint: str | None = None,
    ratio: float | None = None,
) -> trace.TracerProvider | None:
    """Set the global tracer provider: ``exporter`` is ``otlp`` (OTLP/HTTP; Jaeger, Tempo and
    collectors take it), ``zipkin`` (Zipkin JSON v2), ``console`` or ``none``; by default
    ``$OTEL_TRACES_EXPORTER``, and ``none`` when that is unset too. ``endpoint`` defaults to the
    exporter's own environment variables (``OTEL_EXPORTER_OTLP_ENDPOINT``…). ``ratio`` samples
    that share of new traces (parent-based); default ``$OTEL_TRACES_SAMPLER_ARG`` or 1.0.
    Returns the provider, or None when tracing stays off."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    choice = (exporter or os.environ.get("OTEL_TRACES_EXPORTER") or "none").lower()
    if choice == "none":
        return None
    span_exporter: SpanExporter
    if choice == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        span_exporter = OTLPSpanExporter(endpoint=endpoint) if endpoint else OTLPSpanExporter()
    elif choice == "zipkin":
        from opentelemetry.exporter.zipkin.json import ZipkinExporter

        span_exporter = ZipkinExporter(endpoint=endpoint) if endpoint else ZipkinExporter()
    elif choice == "console":
        span_exporter = ConsoleSpanExporter()
    else:
        raise ValueError(f"unknown trace exporter {choice!r}: use otlp, zipkin, console or none")
    if ratio is None:
        ratio = float(os.environ.get("OTEL_TRACES_SAMPLER_ARG", "1.0"))
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"sampling ratio must be in [0, 1], got {ratio}")
    provider = TracerProvider(
        resource=Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", service_name)}),
        sampler=ParentBased(TraceIdRatioBased(ratio)),
    )
    provider.add_span_processor(BatchSpanProcessor(span_exporter))
    trace.set_tracer_provider(provider)
    return provider


def enabled() -> bool:
    """Whether this process exports traces (an SDK tracer provider is installed)."""
    from opentelemetry.sdk.trace import TracerProvider

    return isinstance(trace.get_tracer_provider(), TracerProvider)


def current_ids() -> tuple[str, str] | None:
    """(trace_id, span_id) in hex of the current span, or None outside a sampled/valid span."""
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")
