"""The context of the call being handled: metadata, deadline, peer. Found through a contextvar,
so a client call made inside a handler inherits the remaining deadline and the trace context
without threading a parameter through user code."""

from __future__ import annotations

import contextvars
from collections.abc import Callable

import msgspec

from meshkit.protocol.metadata import REQUEST_ID, Metadata


class Context(msgspec.Struct):
    """What a handler may want to know about the call it serves.

    ``deadline`` is an absolute time on the event loop's clock (``loop.time()``), or None for no
    deadline; ``clock`` is that clock. ``time_remaining()`` is what a nested call inherits.
    ``trace`` is the binary W3C trace context the call came with (trace id, parent span id,
    flags: 25 bytes, see ``meshkit.observe.tracing``) or the one tracing started here, else None.
    (A msgspec Struct because one is built per call: C construction is ~4x cheaper.)
    """

    service: str
    method: str
    metadata: Metadata
    deadline: float | None
    peer: str
    clock: Callable[[], float]
    trace: bytes | None = None

    def time_remaining(self) -> float | None:
        """Seconds left before the deadline (may be negative), or None without a deadline."""
        if self.deadline is None:
            return None
        return self.deadline - self.clock()

    @property
    def request_id(self) -> str | None:
        value = self.metadata.get(REQUEST_ID)
        return value if isinstance(value, str) else None

    def __repr__(self) -> str:
        return f"Context({self.service}.{self.method}, peer={self.peer}, deadline={self.deadline})"


_current: contextvars.ContextVar[Context | None] = contextvars.ContextVar("meshkit_context", default=None)


def current_context() -> Context | None:
    """The context of the call the running code is handling, or None outside a handler."""
    return _current.get()
