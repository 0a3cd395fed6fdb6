"""Gateway metrics per route and HTTP status: ``meshkit_gateway_requests_total{route,status}``
and ``meshkit_gateway_request_duration_seconds{route}`` (the RPC buckets, 100 µs to 10 s).
Plain numbers updated per request, turned into metric families when Prometheus scrapes (as
meshkit.observe.metrics does for RPC calls). ``route`` is the template (``GET /api/orders/{id}``),
never the raw path: a client cannot grow the label set."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from meshkit.observe.metrics import BUCKETS


class GatewayMetrics(Collector):
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.requests: dict[tuple[str, str], int] = {}
        self.durations: dict[str, tuple[list[int], list[float]]] = {}
        (registry if registry is not None else REGISTRY).register(self)

    def observe(self, route: str, status: int, seconds: float) -> None:
        key = (route, str(status))
        self.requests[key] = self.requests.get(key, 0) + 1
        entry = self.durations.get(route)
        if entry is None:
            entry = self.durations[route] = ([0] * (len(BUCKETS) + 1), [0.0])
        entry[0][bisect_left(BUCKETS, seconds)] += 1
        entry[1][0] += seconds

    def collect(self) -> Iterator[Any]:
        requests = CounterMetricFamily(
            "meshkit_gateway_requests", "HTTP requests answered by the gateway", labels=["route", "status"]
        )
        for (route, status), n in sorted(dict(self.requests).items()):
            requests.add_metric([route, status], n)
        duration = HistogramMetricFamily(
            "meshkit_gateway_request_duration_seconds", "Time to answer an HTTP request", labels=["route"]
        )
        for route, (buckets, total) in sorted(dict(self.durations).items()):
            running = 0
            cumulative = []
            for bound, n in zip([*map(str, BUCKETS), "+Inf"], list(buckets), strict=True):
                running += n
                cumulative.append((bound, running))
            duration.add_metric([route], cumulative, total[0])
        yield from (requests, duration)
