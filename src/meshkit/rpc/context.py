"""The context of the call being handled: metadata, deadline, peer. Found through a contextvar,
so a client call made inside a handler inherits the remaining deadline and the trace context
without threading a parameter through user code."""

from __future__ import annotations

import contextvars
from typing import Any

from meshkit.protocol.metadata import Metadata


class Context:
    """What a handler may want to know about the call it serves.

    ``deadline`` is an absolute time on the event loop's clock (``loop.time()``), or None for no
    deadline. ``time_remaining()`` is what a nested call inherits.
    """

    __slots__ = ("_clock", "deadline", "metadata", "method", "peer", "service")

    def __init__(
        self,
        service: str,
        method: str,
        metadata: Metadata,
        deadline: float | None,
        peer: str,
        clock: Any,
    ) -> None:
        self.service = service
        self.method = method
        self.metadata = metadata
        self.deadline = deadline
        self.peer = peer
        self._clock = clock

    def time_remaining(self) -> float | None:
        """Seconds left before the deadline (may be negative), or None without a deadline."""
        if self.deadline is None:
            return None
        now: float = self._clock()
        return self.deadline - now

    @property
    def request_id(self) -> str | None:
        value = self.metadata.get("request-id")
        return value if isinstance(value, str) else None

    def __repr__(self) -> str:
        return f"Context({self.service}.{self.method}, peer={self.peer}, deadline={self.deadline})"


_current: contextvars.ContextVar[Context | None] = contextvars.ContextVar("meshkit_context", default=None)


def current_context() -> Context | None:
    """The context of the call the running code is handling, or None outside a handler."""
    return _current.get()


def set_current(ctx: Context | None) -> contextvars.Token[Context | None]:
    return _current.set(ctx)


def reset_current(token: contextvars.Token[Context | None]) -> None:
    _current.reset(token)
