"""What observability adds to the default middleware chains of every Server and Client.

Tracing leads a default chain whenever the process has tracing configured (``tracing.configure``,
``meshkit run --trace``, or an OpenTelemetry SDK tracer provider set by the application itself),
so that a ``Client()`` made with the defaults inside a traced handler continues the trace: its
calls get a client span and carry the context to the next hop. The check is made when the Server
or Client is made; without tracing it costs a dictionary lookup and nothing per call. Imported by
``meshkit`` itself, so the hook is in place before any chain is built.
"""

from __future__ import annotations

import sys
from functools import partial

from meshkit.rpc.middleware import Middleware, add_to_default_chains


def tracing_if_configured(side: str) -> Middleware | None:
    """The tracing middleware of ``side`` if this process exports traces, else None."""
    if "opentelemetry.sdk.trace" not in sys.modules:
        return None  # no SDK imported: nothing can have configured a tracer provider
    from meshkit.observe import tracing

    return tracing.middleware(side) if tracing.enabled() else None


for _side in ("server", "client"):
    add_to_default_chains(_side, partial(tracing_if_configured, _side))
