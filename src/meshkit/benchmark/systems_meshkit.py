"""The meshkit systems, both on uvloop (``meshkit.transport.loop.run``).

``meshkit``: ``Server(..., middleware=[])`` and ``Client(..., middleware=[])``, no middleware at all.
``meshkit-default``: both ends with their default middleware (``middleware=None``: the access log).
Everything else is meshkit's defaults on both (keepalive, the client's 10 s call timeout, ...).
"""

from __future__ import annotations

from typing import Any

import msgspec

from meshkit import Client, Server, Service, rpc
from meshkit.benchmark.closed_loop import closed_loop
from meshkit.benchmark.systems import HOST, AnnounceFn
from meshkit.benchmark.worker import wait_for_stop_signal
from meshkit.transport.loop import run


class Item(msgspec.Struct):
    id: int
    name: str
    tags: list[str]


ITEM = Item(42, "alice", ["a", "b"])


class Echo(Service, name="echo"):
    @rpc
    async def echo(self, item: Item) -> Item:
        return item


def _middleware(system: str, side: str = "server") -> list[Any] | None:
    """``meshkit-metrics``: the default chain plus Prometheus metrics (as ``meshkit run``).
    ``meshkit-traced-N``: that plus tracing, N % of traces sampled, spans batched to an exporter
    that drops them (the cost of the SDK, not of a network)."""
    if system == "meshkit":
        return []
    if system == "meshkit-default":
        return None
    if system == "meshkit-metrics":
        from meshkit.observe import default_chain

        return default_chain(side, tracing=False)
    if system.startswith("meshkit-traced-"):
        from meshkit.observe import default_chain

        ratio = int(system.rpartition("-")[2]) / 100
        return default_chain(side, tracing=True, tracer_provider=_provider(), trace_ratio=ratio)
    raise ValueError(f"not a meshkit system: {system!r}")


def _provider() -> Any:
    from collections.abc import Sequence

    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased

    class Drop(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider(sampler=ParentBased(ALWAYS_ON))  # the middleware samples (as configure())
    provider.add_span_processor(BatchSpanProcessor(Drop()))
    return provider


async def _serve(system: str, port: int, announce: AnnounceFn) -> None:
    server = Server([Echo()], HOST, port, middleware=_middleware(system))
    await server.start()
    announce(server.port)
    try:
        await wait_for_stop_signal()
    finally:
        await server.stop(grace=1.0)


async def _load(system: str, port: int, concurrency: int, duration: float, warmup: float) -> dict[str, Any]:
    client = Client(target=f"{HOST}:{port}", middleware=_middleware(system, "client"))
    try:
        echo = client.proxy(Echo).echo
        got = await echo(ITEM)  # connects, and checks that the echo is right
        if got != ITEM:
            raise RuntimeError(f"echo returned {got!r}, expected {ITEM!r}")
        return await closed_loop(echo, ITEM, concurrency, duration, warmup)
    finally:
        await client.close()


def serve(system: str, port: int, announce: AnnounceFn) -> None:
    run(_serve(system, port, announce))


def load(system: str, port: int, concurrency: int, duration: float, warmup: float) -> dict[str, Any]:
    result = run(_load(system, port, concurrency, duration, warmup))
    result["loop"] = _loop_name()
    return result


def _loop_name() -> str:
    from meshkit.transport.loop import has_uvloop

    return "uvloop" if has_uvloop() else "asyncio"
