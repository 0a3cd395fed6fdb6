"""Tracing of the gateway's HTTP requests: a SERVER span per request, around all its steps.

Its calls' CLIENT spans (``tracing.middleware("client", provider)`` on the gateway's clients)
become the span's children. OpenTelemetry is imported inside the methods: only an app given a
tracer provider needs it.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from meshkit.gateway.asgi import Scope


class HttpTracing:
    """A SERVER span per HTTP request, named by its route template, continuing an incoming W3C
    ``traceparent``. Sampling as meshkit's RPC tracing decides it: once, where the trace starts
    (``ratio`` of new traces), and the caller's decision otherwise; an unsampled request costs
    no span, only a context its calls forward. With ``trust=False`` (``gateway.trust_traceparent
    = false``) an incoming context is continued (same trace id, its span as the parent) but its
    sampled flag is not obeyed: the gateway decides with ``ratio``, so callers on the internet
    cannot have every one of their requests traced."""

    def __init__(self, provider: Any, ratio: float, trust: bool = True) -> None:
        import random

        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self.tracer = provider.get_tracer("meshkit.gateway")
        self.ratio = ratio
        self.trust = trust
        self.propagator = TraceContextTextMapPropagator()
        self.random = random.Random()

    async def run(self, scope: Scope, handling: Awaitable[None]) -> None:
        from opentelemetry import context as otel_context
        from opentelemetry import trace
        from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, StatusCode, TraceFlags

        carrier = {}
        for name, value in scope["headers"]:
            if name in (b"traceparent", b"tracestate"):
                carrier[name.decode()] = value.decode("latin-1")
        parent = self.propagator.extract(carrier) if carrier else None
        remote = trace.get_current_span(parent).get_span_context() if parent is not None else None
        if remote is not None and remote.is_valid:
            if self.trust:
                sampled = remote.trace_flags.sampled
            else:  # continue the trace, decide its sampling here
                sampled = self.random.random() < self.ratio
                decided = SpanContext(
                    remote.trace_id,
                    remote.span_id,
                    True,
                    TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT),
                    remote.trace_state,
                )
                parent = trace.set_span_in_context(NonRecordingSpan(decided))
        else:
            parent = None
            sampled = self.random.random() < self.ratio
        if not sampled:
            if parent is None:  # a new unsampled trace: ids for its calls to forward and logs to show
                bits = self.random.getrandbits(192) | (1 << 64) | 1
                unsampled = SpanContext(bits >> 64, bits & ((1 << 64) - 1), False, TraceFlags(0))
                parent = trace.set_span_in_context(NonRecordingSpan(unsampled))
            token = otel_context.attach(parent)
            try:
                await handling
            finally:
                otel_context.detach(token)
            return
        method = scope["method"]
        span = self.tracer.start_span(
            f"{method}",
            context=parent,
            kind=SpanKind.SERVER,
            attributes={"http.request.method": method, "url.path": scope.get("path", ""), "url.scheme": "http"},
        )
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        try:
            await handling
        finally:
            route = scope.get("meshkit.route")
            status = scope.get("meshkit.status")
            if isinstance(route, str) and route != "unmatched":
                span.update_name(route)
                span.set_attribute("http.route", route.partition(" ")[2])
            if isinstance(status, int):
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_status(StatusCode.ERROR)
            span.end()
            otel_context.detach(token)
