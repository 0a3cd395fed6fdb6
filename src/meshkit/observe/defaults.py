"""What observability adds to the default middleware chains of every Server and Client, and
``default_chain``: the standard observability chain, assembled in one place.

Tracing leads a default chain whenever the process has tracing configured (``tracing.configure``,
``meshkit run --trace``, or an OpenTelemetry SDK tracer provider set by the application itself),
so that a ``Client()`` made with the defaults inside a traced handler continues the trace: its
calls get a client span and carry the context to the next hop. The check is made when the Server
or Client is made; without tracing it costs a dictionary lookup and nothing per call. Imported by
``meshkit`` itself, so the hook is in place before any chain is built; it imports neither
prometheus_client nor OpenTelemetry until a chain asks for them.
"""

from __future__ import annotations

import sys
from functools import partial
from typing import TYPE_CHECKING

from meshkit.rpc import access_log as _access_log
from meshkit.rpc.middleware import Middleware, add_to_default_chains

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

    from meshkit.observe.metrics import RpcMetrics

#: The access log's logger on each side (``--no-access-log`` and logging config name them).
ACCESS_LOGGERS = {"server": "meshkit.access", "client": "meshkit.access.client"}


def tracing_configured() -> bool:
    """Whether this process exports traces (an SDK tracer provider is installed)."""
    if "opentelemetry.sdk.trace" not in sys.modules:
        return False  # no SDK imported: nothing can have configured a tracer provider
    from meshkit.observe import tracing

    return tracing.enabled()


def tracing_if_configured(side: str) -> Middleware | None:
    """The tracing middleware of ``side`` if this process exports traces, else None."""
    if not tracing_configured():
        return None
    from meshkit.observe import tracing

    return tracing.middleware(side)


def default_chain(
    side: str,
    *,
    metrics: bool | RpcMetrics = True,
    tracing: bool | None = None,
    access_log: bool = True,
    tracer_provider: TracerProvider | None = None,
    trace_ratio: float | None = None,
) -> list[Middleware]:
    """The standard observability chain of ``side`` ("server" or "client"), outermost first:
    tracing, metrics, the access log. That order is the point of having one place for it:
    the metrics and the access log run inside the call's span (their lines carry its ids), and
    the metrics time what the access log costs too.

    ``metrics``: True for the process's (``default_metrics()``, on prometheus_client's default
    registry), an :class:`~meshkit.observe.RpcMetrics` for that one, False for none.
    ``tracing``: None (the default) puts it in when the process exports traces (as the default
    chains of Server and Client do) or ``tracer_provider`` is given; True always, False never.
    ``tracer_provider`` and ``trace_ratio`` go to ``tracing.middleware`` (default: the global
    provider and the configured ratio). ``access_log``: the ``meshkit.access`` logger's line per
    call (``meshkit.access.client`` on the client), which costs a level check while it is off.

    Give the result to ``Server(middleware=...)`` or ``Client(middleware=...)``; a policy
    given to them goes inside it, so the calls it refuses are counted and logged too (except
    those a server sheds on its fast path, counted by the policy itself).
    """
    if side not in ACCESS_LOGGERS:
        raise ValueError(f"side is 'server' or 'client', not {side!r}")
    chain: list[Middleware] = []
    if tracing or (tracing is None and (tracer_provider is not None or tracing_configured())):
        from meshkit.observe import tracing as _tracing

        chain.append(_tracing.middleware(side, tracer_provider, trace_ratio))
    if metrics is not False:
        from meshkit.observe.metrics import default_metrics

        chain.append((default_metrics() if metrics is True else metrics).middleware(side))
    if access_log:
        chain.append(_access_log.access_log(ACCESS_LOGGERS[side]))
    return chain


for _side in ("server", "client"):
    add_to_default_chains(_side, partial(tracing_if_configured, _side))
