"""The demo's driver: places orders through the gateway over HTTP, as a shop's front end would,
and sorts every answer into an outcome for the live view."""

from __future__ import annotations

import asyncio
import collections
import json
import random
import time
from typing import Any

from meshkit.demo.http import HttpConnection
from meshkit.demo.services import DEMO_API_KEY, OUT_OF_STOCK, SKUS
from meshkit.demo.stats import RollingStats


def outcome(status: int, answer: bytes) -> tuple[str | None, str | None]:
    """(error, expected) for one answer to POST /api/orders: both None when the order was placed;
    ``expected`` names a refusal the shop gives on purpose (out of stock); ``error`` is the status
    code's name (or ``HTTP nnn`` when the body is not the gateway's error JSON) of anything else."""
    if status == 201:
        return None, None
    try:
        body = json.loads(answer)
    except ValueError:
        return f"HTTP {status}", None
    if not isinstance(body, dict):
        return f"HTTP {status}", None
    code = str(body.get("code", status))
    if code == "FAILED_PRECONDITION" and str(body.get("message", "")).endswith(OUT_OF_STOCK):
        return None, OUT_OF_STOCK
    return code, None


class Spread:
    """Which inventory instance served each call, per second (for the live view)."""

    def __init__(self) -> None:
        self.seconds: dict[int, collections.Counter[str]] = collections.defaultdict(collections.Counter)

    def record(self, now: float, instance: str) -> None:
        self.seconds[int(now)][instance] += 1
        for old in [s for s in self.seconds if s < int(now) - 5]:
            del self.seconds[old]

    def last_second(self, now: float) -> collections.Counter[str]:
        return self.seconds.get(int(now) - 1, collections.Counter())


class Traces:
    """Trace ids of sampled calls, for the output (only when the demo exports traces)."""

    def __init__(self) -> None:
        self.last: str | None = None


async def drive(
    gateway: str,
    stats: RollingStats,
    spread: Spread,
    concurrency: int,
    rate: float,
    stop: asyncio.Event,
    traces: Traces | None = None,
) -> None:
    """Place orders through the gateway over HTTP until ``stop`` is set."""
    tracer: Any = None
    inject: Any = None
    if traces is not None:
        from opentelemetry import trace
        from opentelemetry.propagate import inject as otel_inject

        # The demo decides itself which requests to trace (one in twenty) and records their ids;
        # the gateway continues the trace from the traceparent header.
        tracer = trace.get_tracer("meshkit.demo")
        inject = otel_inject
    host, _, port = gateway.rpartition(":")
    rng = random.Random(7)
    interval = concurrency / rate if rate > 0 else 0.0
    headers = {"content-type": "application/json", "x-api-key": DEMO_API_KEY}

    async def worker(n: int) -> None:
        http = HttpConnection(host, int(port))
        next_at = time.monotonic() + interval * n / concurrency
        try:
            while not stop.is_set():
                if interval:
                    delay = next_at - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    next_at += interval
                start = time.perf_counter()
                body = json.dumps(
                    {"customer": f"c{rng.randrange(1000)}", "sku": rng.choice(SKUS), "qty": rng.randint(1, 5)}
                ).encode()
                try:
                    if tracer is not None and traces is not None and rng.random() < 0.05:
                        with tracer.start_as_current_span("demo: place an order") as span:
                            traced = dict(headers)
                            inject(traced)
                            status, answer = await http.request("POST", "/api/orders", body, traced)
                        traces.last = format(span.get_span_context().trace_id, "032x")
                    else:
                        status, answer = await http.request("POST", "/api/orders", body, headers)
                except (OSError, asyncio.IncompleteReadError, ValueError):
                    stats.record(time.monotonic(), time.perf_counter() - start, "UNAVAILABLE")
                    await asyncio.sleep(0.05)
                    continue
                if status == 201:
                    spread.record(time.monotonic(), json.loads(answer).get("inventory", "?"))
                error, expected = outcome(status, answer)
                stats.record(time.monotonic(), time.perf_counter() - start, error, expected=expected)
        finally:
            await http.close()

    await asyncio.gather(*(worker(i) for i in range(concurrency)))
