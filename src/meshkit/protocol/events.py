"""What a :class:`~meshkit.protocol.connection.Connection` tells its application, besides frames.

Frozen dataclasses, made only for the rare things (a CANCEL, a CREDIT, a PONG, a GOAWAY, a broken
connection); the hot frames (REQUEST on the server, answers on the client) travel as the
:class:`~meshkit.protocol.frames.Frame` itself, or a tuple, which cost less to make.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from meshkit.errors import ProtocolError


@dataclass(frozen=True, slots=True)
class Cancelled:
    """Server: the caller gave up on a call; ``attachment`` is what the application attached."""

    stream_id: int
    attachment: Any


@dataclass(frozen=True, slots=True)
class CreditGranted:
    """Server: the caller allows more STREAM_DATA on a server stream (:meth:`Connection.credit`)."""

    stream_id: int
    attachment: Any


@dataclass(frozen=True, slots=True)
class PongReceived:
    body: bytes


@dataclass(frozen=True, slots=True)
class GoAwayReceived:
    """The peer takes no new streams. On the client, ``unprocessed`` holds the attachments of
    the calls above ``last_stream_id``: the server never saw them, so they are safe to resend."""

    last_stream_id: int
    code: int
    message: str
    unprocessed: tuple[Any, ...] = ()


@dataclass(frozen=True, slots=True)
class ConnectionBroken:
    """The peer broke the protocol; the connection is closed and takes nothing more."""

    error: ProtocolError
