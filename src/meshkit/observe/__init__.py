"""Observability: Prometheus metrics, OpenTelemetry tracing, structured logs, the admin HTTP port.

Everything here is middleware or a collector composed around a Server or Client; nothing runs
unless installed (``meshkit run`` installs metrics by default, see ``--admin-port``).
"""

from meshkit.observe.admin import AdminHttp
from meshkit.observe.metrics import BUCKETS, RpcMetrics, default_metrics

__all__ = ["BUCKETS", "AdminHttp", "RpcMetrics", "default_metrics"]
