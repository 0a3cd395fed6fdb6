"""OpenTelemetry tracing of RPC calls: a CLIENT span per call made, a SERVER span per call
served, the W3C trace context carried in every request frame.

Spans follow OTel's RPC conventions: named ``service/method``, with ``rpc.system = "meshkit"``,
``rpc.service``, ``rpc.method``, ``rpc.meshkit.status_code`` (the gRPC number) and the peer's
address. The server span is the current span while the handler runs, so calls the handler makes
(and tasks it starts: asyncio copies the context) are its children without any code in the
handler. Sampling is decided once, where a trace starts (parent-based ratio: ``configure(ratio=…)``
or ``OTEL_TRACES_SAMPLER`` / ``OTEL_TRACES_SAMPLER_ARG``), and travels in the trace flags.

The trace context (trace id, parent span id, flags: the fields of a W3C ``traceparent``) travels
in binary, 25 bytes after the metadata map (the TRACE flag, protocol.md), and ``tracestate`` in
the metadata. Why not a ``traceparent`` string in the map: every call of a traced service carries
a unique one, so no call's metadata could come from a cache again, and formatting, encoding,
decoding and parsing 55 characters of hex cost more than the rest of the tracing of an
unsampled call. A server still accepts a textual ``traceparent`` in the metadata (callers that
speak plain W3C), strictly parsed.

Cost: without the middleware, nothing. An unsampled call costs no span and no OTel context: the
edge draws 24 random bytes, every hop forwards them, and log lines read their ids from them.
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
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState

from meshkit.errors import DEADLINE_CANCEL_MESSAGE, RpcError
from meshkit.protocol.frames import TRACE_CONTEXT_SIZE
from meshkit.protocol.metadata import TRACEPARENT, TRACESTATE
from meshkit.rpc.context import _current, current_context

Handler = Callable[[Any], Awaitable[Any]]
Middleware = Callable[[Handler], Handler]
SYSTEM = "meshkit"

_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16
_ZERO_TRACE_BYTES = bytes(16)
_ZERO_SPAN_BYTES = bytes(8)
#: The lowest bit of the trace id and of the span id in a 192-bit draw: neither is ever all zeros.
_NONZERO = (1 << 64) | 1
_FLAGS = TRACE_CONTEXT_SIZE - 1


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


def context_from_traceparent(value: object) -> bytes | None:
    """The binary trace context of a valid ``traceparent`` (see :func:`parse_traceparent`), else None."""
    if parse_traceparent(value) is None:
        return None
    text: str = value  # type: ignore[assignment]
    return bytes.fromhex(text[3:35] + text[36:52] + text[53:55])


def traceparent(context: bytes) -> str:
    """The ``traceparent`` header of a binary trace context (for HTTP, logs, other systems)."""
    return f"00-{context[:16].hex()}-{context[16:24].hex()}-{context[_FLAGS]:02x}"


def valid_context(context: object) -> bool:
    """Whether ``context`` is a well-formed binary trace context: 25 bytes, ids not all zeros."""
    return (
        type(context) is bytes
        and len(context) == TRACE_CONTEXT_SIZE
        and not context.startswith(_ZERO_TRACE_BYTES)
        and not context.startswith(_ZERO_SPAN_BYTES, 16)
    )


def _otel_current_getter() -> Callable[[], Any]:
    """OTel's current context (a mapping, empty when no span or baggage is set). Read from its
    contextvar when the runtime context is the standard one: a C call rather than three Python
    ones, on every call a client makes outside a handler."""
    runtime = getattr(otel_context, "_RUNTIME_CONTEXT", None)
    var = getattr(runtime, "_current_context", None)
    get = getattr(var, "get", None)
    return get if callable(get) else otel_context.get_current


def _binary(ctx: SpanContext) -> bytes:
    return ctx.trace_id.to_bytes(16, "big") + ctx.span_id.to_bytes(8, "big") + bytes((int(ctx.trace_flags) & 0xFF,))


def _parent(context: bytes, state: object) -> Any:
    """The OTel context whose current span is the remote parent ``context`` describes."""
    parent = SpanContext(
        trace_id=int.from_bytes(context[:16], "big"),
        span_id=int.from_bytes(context[16:24], "big"),
        is_remote=True,
        trace_flags=TraceFlags(context[_FLAGS]),
        trace_state=TraceState.from_header([state]) if type(state) is str and state else None,
    )
    return trace.set_span_in_context(NonRecordingSpan(parent))


def _peer_attributes(span: Any, peer: str) -> None:
    host, _, port = peer.rpartition(":")
    if host:
        span.set_attribute("network.peer.address", host.strip("[]"))
        if port.isdigit():
            span.set_attribute("network.peer.port", int(port))


def _finish(span: Any, exc: BaseException | None) -> None:
    if exc is None:
        span.set_attribute("rpc.meshkit.status_code", 0)
        return
    if isinstance(exc, RpcError):
        span.set_attribute("rpc.meshkit.status_code", int(exc.code))
        span.set_status(Status(StatusCode.ERROR, f"{exc.code.name}: {exc.message}"))
    elif isinstance(exc, asyncio.CancelledError):
        expired = exc.args == (DEADLINE_CANCEL_MESSAGE,)  # the server's own deadline
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
    and travels in the trace flags; an unsampled call then costs no span at all: a server keeps
    the caller's trace context for its handler's own calls to forward.
    (The provider's own sampler still applies to the calls sampled here: give it ParentBased
    with an always-on root, as ``configure`` does, or the two ratios multiply.)"""
    if side not in ("server", "client"):
        raise ValueError(f"side is 'server' or 'client', not {side!r}")
    tracer = (provider or trace.get_tracer_provider()).get_tracer("meshkit")
    server = side == "server"
    kind = SpanKind.SERVER if server else SpanKind.CLIENT
    share = ratio if ratio is not None else _ratio()
    rng = random.Random()
    getrandbits = rng.getrandbits
    draw = rng.random
    otel_current = _otel_current_getter()
    handled_call = _current.get

    def unsampled_root() -> bytes:
        # Trace id and span id from one draw, flags 00: not sampled, but logs still share the id.
        return ((getrandbits(192) | _NONZERO) << 8).to_bytes(TRACE_CONTEXT_SIZE, "big")

    def wrap(next_handler: Handler) -> Handler:
        async def traced(call: Any, parent: Any) -> Any:
            spec = call.spec
            span = tracer.start_span(
                f"{spec.service}/{spec.name}",
                context=parent,
                kind=kind,
                attributes={"rpc.system": SYSTEM, "rpc.service": spec.service, "rpc.method": spec.name},
            )
            token = otel_context.attach(trace.set_span_in_context(span, parent))
            if not server:
                # The server continues this trace: this span is its parent.
                ctx = span.get_span_context()
                call.trace = _binary(ctx)
                if ctx.trace_state:
                    call.metadata[TRACESTATE] = ctx.trace_state.to_header()
            error: BaseException | None = None
            try:
                return await next_handler(call)
            except BaseException as exc:
                error = exc
                raise
            finally:
                if span.is_recording():
                    _peer_attributes(span, call.peer)  # a client's peer is known only now
                    _finish(span, error)
                span.end()
                otel_context.detach(token)

        def adopt(call: Any, ctx: bytes | None) -> None:
            """Make ``ctx`` the call's trace context, and its handler's. (The server copies
            call.trace to the handler's Context once the chain's synchronous part has run; a
            coroutine middleware before this one runs it later, inside the handler's context.)"""
            call.trace = ctx
            handled = handled_call()
            if handled is not None and handled.metadata is call.metadata:
                handled.trace = ctx

        def serve(call: Any) -> Awaitable[Any]:
            ctx = call.trace
            if ctx is None:
                text = call.metadata.pop(TRACEPARENT, None)  # a caller speaking textual W3C
                if text is not None:
                    ctx = context_from_traceparent(text)
                    adopt(call, ctx)
            elif ctx.startswith(_ZERO_TRACE_BYTES) or ctx.startswith(_ZERO_SPAN_BYTES, 16):
                ctx = None
                adopt(call, None)
            if ctx is not None:
                if not ctx[_FLAGS] & 1:
                    return next_handler(call)  # unsampled upstream: nothing to record, forward as is
                return traced(call, _parent(ctx, call.metadata.get(TRACESTATE)))
            # None or malformed: not a decision to honour (nor a way to force sampling): start afresh.
            call.metadata.pop(TRACESTATE, None)
            if draw() < share:
                return traced(call, None)  # a new trace starts here, sampled
            adopt(call, unsampled_root())  # for log lines and the handler's own calls to forward
            return next_handler(call)

        def send(call: Any) -> Awaitable[Any]:
            handled = handled_call()
            if handled is not None:
                ctx = handled.trace
                # Inside a call that was not sampled: keep its decision, and its tracestate (the
                # cheap, common path). Ids are checked here too: a server without the tracing
                # middleware hands its handler the context as it arrived.
                if (
                    ctx is not None
                    and not ctx[_FLAGS] & 1
                    and not ctx.startswith(_ZERO_TRACE_BYTES)
                    and not ctx.startswith(_ZERO_SPAN_BYTES, 16)
                ):
                    call.trace = ctx
                    state = handled.metadata.get(TRACESTATE)
                    if type(state) is str:
                        call.metadata[TRACESTATE] = state
                    return next_handler(call)
            if otel_current():  # a span may be current (the server's, or the application's own)
                current = trace.get_current_span().get_span_context()
                if current.is_valid:
                    if current.trace_flags.sampled:
                        return traced(call, None)  # a child of the current span
                    call.trace = _binary(current)
                    return next_handler(call)
            if draw() < share:
                return traced(call, None)
            call.trace = ((getrandbits(192) | _NONZERO) << 8).to_bytes(TRACE_CONTEXT_SIZE, "big")  # unsampled_root()
            return next_handler(call)

        return serve if server else send

    return wrap


_configured_ratio: float | None = None


def sampling_ratio() -> float:
    """The share of new traces this process samples (``configure``'s ratio, else the OTEL_* environment)."""
    return _ratio()


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
    span), those of the trace context it came with, so its log lines still share one id across
    services; None outside any trace."""
    ctx = trace.get_current_span().get_span_context()
    if ctx.is_valid:
        return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")
    handled = current_context()
    if handled is None:
        return None
    binary = handled.trace
    if binary is None:  # a caller speaking textual W3C to a server without the tracing middleware
        binary = context_from_traceparent(handled.metadata.get(TRACEPARENT))
    if binary is None or not valid_context(binary):
        return None
    return binary[:16].hex(), binary[16:24].hex()
