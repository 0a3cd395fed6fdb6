"""Stream states and their transitions, as data.

One table, the same for the caller and the server: each side sees the same frames, one sending and
one receiving them. :class:`meshkit.protocol.connection.Connection` asks :func:`advance` (or reads
the table once, for the unary hot path) on every stream frame it sends or receives, and treats a
missing entry as a protocol violation by the peer, so the legal life of a stream is written down
in exactly one place (docs/protocol.md draws it from here).
"""

from __future__ import annotations

import enum
from typing import Final

from meshkit.errors import MalformedFrame


class StreamState(enum.Enum):
    IDLE = "idle"  # id allocated, nothing sent
    OPEN = "open"  # REQUEST sent (caller) or received (server); no answer yet
    STREAMING = "streaming"  # at least one STREAM_DATA went by
    CLOSED = "closed"  # RESPONSE, ERROR, STREAM_END or CANCEL went by


class StreamEvent(enum.Enum):
    REQUEST = "request"
    RESPONSE = "response"
    ERROR = "error"
    STREAM_DATA = "stream_data"
    STREAM_END = "stream_end"
    CANCEL = "cancel"
    CREDIT = "credit"


S, E = StreamState, StreamEvent

#: (state, event) -> next state. Identical for caller and server: each side sees the same frames,
#: one sending and one receiving them.
TRANSITIONS: Final[dict[tuple[StreamState, StreamEvent], StreamState]] = {
    (S.IDLE, E.REQUEST): S.OPEN,
    (S.OPEN, E.RESPONSE): S.CLOSED,
    (S.OPEN, E.ERROR): S.CLOSED,
    (S.OPEN, E.STREAM_DATA): S.STREAMING,
    (S.OPEN, E.STREAM_END): S.CLOSED,
    (S.OPEN, E.CANCEL): S.CLOSED,
    (S.OPEN, E.CREDIT): S.OPEN,
    (S.STREAMING, E.STREAM_DATA): S.STREAMING,
    (S.STREAMING, E.STREAM_END): S.CLOSED,
    (S.STREAMING, E.ERROR): S.CLOSED,
    (S.STREAMING, E.CANCEL): S.CLOSED,
    (S.STREAMING, E.CREDIT): S.STREAMING,
}


def advance(state: StreamState, event: StreamEvent) -> StreamState:
    """The state after ``event``; an event the table does not allow is a :class:`MalformedFrame`."""
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise MalformedFrame(f"{event.value} is not allowed on a stream in state {state.value}") from None
