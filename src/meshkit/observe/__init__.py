"""Observability: Prometheus metrics, OpenTelemetry tracing, structured logs, the admin HTTP port.

Everything here is middleware or a collector composed around a Server or Client; nothing runs
unless installed (``meshkit run`` installs metrics by default, see ``--admin-port``), except
tracing, which joins the default chains once the process has it configured (see ``defaults``).
``default_chain(side)`` is the standard chain (tracing, metrics, access log) in its order.
The names below load on first use: ``import meshkit`` loads only ``observe.defaults``, not
prometheus_client or the admin server.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from meshkit.observe.admin import AdminHttp
    from meshkit.observe.defaults import default_chain
    from meshkit.observe.metrics import BUCKETS, RpcMetrics, default_metrics

__all__ = ["BUCKETS", "AdminHttp", "RpcMetrics", "default_chain", "default_metrics"]

_WHERE = {
    "AdminHttp": "meshkit.observe.admin",
    "BUCKETS": "meshkit.observe.metrics",
    "RpcMetrics": "meshkit.observe.metrics",
    "default_chain": "meshkit.observe.defaults",
    "default_metrics": "meshkit.observe.metrics",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'meshkit.observe' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
