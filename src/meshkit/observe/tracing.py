"""OpenTelemetry tracing of RPC calls: a CLIENT span per call made, a SERVER span per call
served, W3C ``traceparent``/``tracestate`` carried in frame metadata.

Spans follow OTel's RPC conventions: named ``service/method``, with ``rpc.system = "meshkit"``,
``rpc.service``, ``rpc.method``, ``rpc.meshkit.status_code`` (the gRPC number) and the peer's
address. The server span is the current span while the handler runs, so calls the handler makes
(and tasks it starts: asyncio copies the context) are its children without any code in the
handler. Sampling is the provider's: parent-based ratio by default (``OTEL_TRACES_SAMPLER`` /
``OTEL_TRACES_SAMPLER_ARG`` or ``configure(ratio=…)``), so one decision at the edge holds for
the whole trace.

Cost: without the middleware, nothing; an unsampled call costs a dict lookup and a string test
on the server and, where a trace starts, two random numbers and a formatted header: no span,
no context switch.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
from collections.abc import Awaitable, Callable
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagators.textmap import Getter, Setter
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from meshkit.errors import RpcError
from meshkit.protocol.metadata import TRACEPARENT, TRACESTATE
from meshkit.rpc.context import current_context

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
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
#: Set by the server middleware in a handled call's (local) metadata when the call is not sampled.
_UNSAMPLED = "meshkit-unsampled"
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16


def parse_traceparent(value: object) -> tuple[str, str, bool] | None:
    """(trace_id, parent_id, sampled) of a valid W3C ``traceparent``, else None. Strict: what a
    client sends is not trusted to be well formed (lowercase hex, version not ff, version 00
    exactly 55 characters, ids not all zeros; sampled is bit 0 of the flags)."""
    if type(value) is not str or len(value) < 55:
        return None
    match = _TRACEPARENT.fullmatch(value)
    if match is None:
        return None
    version, trace_id, parent_id, flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest) or trace_id == _ZERO_TRACE or parent_id == _ZERO_SPAN:
        return None
    return trace_id, parent_id, bool(int(flags, 16) & 1)


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
        expired = exc.args == ("deadline exceeded",)  # the server's own deadline (rpc/server.py)
        span.set_attribute("rpc.meshkit.status_code", 4 if expired else 1)
        span.set_status(Status(StatusCode.ERROR, "DEADLINE_EXCEEDED" if expired else "CANCELLED"))
    else:
        span.record_exception(exc)
        span.set_status(Status(StatusCode.ERROR, type(exc).__name__))


def middleware(side: str, provider: trace.TracerProvider | None = None, ratio: float | None = None) -> Middleware:
    """The tracing middleware of ``side`` ("server" or "client"); put it first in the chain so
    that the other middleware (the access log) runs inside its span. ``provider`` defaults to
    the global one (``configure`` or the OTel SDK's environment set it).

    ``ratio`` is the share of new traces sampled (default: what ``configure`` was given, else
    ``$OTEL_TRACES_SAMPLER_ARG``, else 1.0). The decision is made here, once, where a trace starts,
    and travels in the ``traceparent`` flags; an unsampled call then costs no span at all: a
    server just keeps the caller's ``traceparent`` for its handler's own calls to forward.
    (The provider's own sampler still applies to the calls sampled here: give it ParentBased
    with an always-on root, as ``configure`` does, or the two ratios multiply.)"""
    tracer = (provider or trace.get_tracer_provider()).get_tracer("meshkit")
    server = side == "server"
    kind = SpanKind.SERVER if server else SpanKind.CLIENT
    share = ratio if ratio is not None else _ratio()
    rng = random.Random()
    getrandbits = rng.getrandbits

    def unsampled_root() -> str:
        ids = format(getrandbits(192) | 1, "048x")  # one draw for both ids; never all zeros
        return f"00-{ids[:32]}-{ids[32:]}-00"

    def wrap(next_handler: Handler) -> Handler:
        async def traced(call: Any, parent: Any) -> Any:
            spec = call.spec
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
                    for key, value in _attributes(call).items():  # a client's peer is known only now
                        span.set_attribute(key, value)
                    _finish(span, error)
                span.end()
                otel_context.detach(token)

        def serve(call: Any) -> Awaitable[Any]:
            metadata = call.metadata
            metadata.pop(_UNSAMPLED, None)  # ours to set, never the caller's
            incoming = metadata.get(TRACEPARENT)
            if incoming is not None:
                parsed = parse_traceparent(incoming)
                if parsed is not None:
                    if not parsed[2]:
                        metadata[_UNSAMPLED] = True
                        return next_handler(call)  # unsampled upstream: nothing to record, forward as is
                    return traced(call, _PROPAGATOR.extract(metadata, getter=_GET))
                # Malformed: not a decision to honour (nor a way to force sampling): start afresh.
                del metadata[TRACEPARENT]
                metadata.pop(TRACESTATE, None)
            if rng.random() < share:
                return traced(call, None)  # a new trace starts here, sampled
            metadata[TRACEPARENT] = unsampled_root()  # for the handler's own calls to forward
            metadata[_UNSAMPLED] = True
            return next_handler(call)

        def send(call: Any) -> Awaitable[Any]:
            handled = current_context()
            if handled is not None:
                incoming = handled.metadata.get(TRACEPARENT)
                # Inside a call that was not sampled (the server checked the header already):
                # keep its decision, and its tracestate (the cheap, common path).
                if incoming is not None and handled.metadata.get(_UNSAMPLED) is True:
                    call.metadata[TRACEPARENT] = incoming
                    state = handled.metadata.get(TRACESTATE)
                    if type(state) is str:
                        call.metadata[TRACESTATE] = state
                    return next_handler(call)
            current = trace.get_current_span().get_span_context()
            if current.is_valid:
                if current.trace_flags.sampled:
                    return traced(call, None)  # a child of the current span
                call.metadata[TRACEPARENT] = _traceparent_of(current)
                return next_handler(call)
            if rng.random() < share:
                return traced(call, None)
            call.metadata[TRACEPARENT] = unsampled_root()
            return next_handler(call)

        return serve if server else send

    return wrap


def _traceparent_of(ctx: Any) -> str:
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


_configured_ratio: float | None = None


def _ratio() -> float:
    """The share of new traces to sample: configure()'s, else from OTEL_TRACES_SAMPLER (always_on,
    always_off, traceidratio, parentbased_*) and OTEL_TRACES_SAMPLER_ARG, else 1.0."""
    if _configured_ratio is not None:
        return _configured_ratio
    sampler = os.environ.get("OTEL_TRACES_SAMPLER", "").lower().removeprefix("parentbased_")
    if sampler == "always_off":
        return 0.0
    if sampler == "always_on":
        return 1.0
    text = os.environ.get("OTEL_TRACES_SAMPLER_ARG", "1.0")
    try:
        ratio = float(text)
    except ValueError:
        raise ValueError(f"OTEL_TRACES_SAMPLER_ARG is not a number: {text!r}") from None
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"OTEL_TRACES_SAMPLER_ARG must be in [0, 1], got {ratio}")
    return ratio


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
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased

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
        ratio = _ratio()
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"sampling ratio must be in [0, 1], got {ratio}")
    global _configured_ratio
    _configured_ratio = ratio  # decided by the middleware where a trace starts (see middleware)
    provider = TracerProvider(
        resource=Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", service_name)}),
        sampler=ParentBased(ALWAYS_ON),
    )
    provider.add_span_processor(BatchSpanProcessor(span_exporter))
    trace.set_tracer_provider(provider)
    return provider


def enabled() -> bool:
    """Whether this process exports traces (an SDK tracer provider is installed)."""
    from opentelemetry.sdk.trace import TracerProvider

    return isinstance(trace.get_tracer_provider(), TracerProvider)


def current_ids() -> tuple[str, str] | None:
    """(trace_id, span_id) in hex of the current span; inside a call that was not sampled (no
    span), those of the ``traceparent`` it came with, so its log lines still share one id
    across services; None outside any trace."""
    ctx = trace.get_current_span().get_span_context()
    if ctx.is_valid:
        return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")
    handled = current_context()
    parsed = parse_traceparent(handled.metadata.get(TRACEPARENT)) if handled is not None else None
    return (parsed[0], parsed[1]) if parsed is not None else None
