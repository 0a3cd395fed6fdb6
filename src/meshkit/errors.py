"""Status codes and the one exception tree of meshkit.

Every error a caller can see is an :class:`RpcError` carrying a :class:`StatusCode` (gRPC's set, so
that the meaning of a code is already known to the people reading it) and a message a person can act
on. The tree::

    MeshkitError                      base of everything meshkit raises on purpose
    ├── RpcError(code, message, details)   what a call ends with; crosses the wire as an ERROR frame
    │   ├── AdmissionRefused          this server refused the call before its handler ran
    │   └── CoordinationError         a lock or an election (meshkit.coord) could not do what was asked
    │       ├── LockTimeout           DEADLINE_EXCEEDED: not granted within ``wait``
    │       ├── LockLost              ABORTED: the lease ended while held (renewal failed, session gone)
    │       ├── EngineUnavailable     UNAVAILABLE (or UNAUTHENTICATED): the engine is down or refused us
    │       ├── VersionConflict       ABORTED: an optimistic (versioned) update met newer versions every time
    │       └── BadLockRequest        INVALID_ARGUMENT: a bad name, ttl or URL (also a ValueError)
    └── ProtocolError                 a peer broke the wire format; the connection is closed
        ├── BadMagic
        ├── UnsupportedVersion
        ├── UnknownFrameType
        ├── FrameTooLarge
        ├── MetadataTooLarge
        ├── MalformedFrame
        └── InternalError             this side failed handling a frame (a bug), not the peer

Driver and socket exceptions are translated at the layer that sees them (a lost connection becomes
``RpcError(UNAVAILABLE)``), so user code catches one type.
"""

from __future__ import annotations

import enum
from typing import Any

__all__ = [
    "DEADLINE_CANCEL_MESSAGE",
    "INSTANCE_FAILURES",
    "RESENDABLE",
    "AdmissionRefused",
    "BadLockRequest",
    "BadMagic",
    "CoordinationError",
    "EngineUnavailable",
    "FrameTooLarge",
    "InternalError",
    "LockLost",
    "LockTimeout",
    "MalformedFrame",
    "MeshkitError",
    "MetadataTooLarge",
    "ProtocolError",
    "RpcError",
    "StatusCode",
    "UnknownFrameType",
    "UnsupportedVersion",
    "VersionConflict",
]


#: What a server cancels a handler with when the call's deadline passes: middleware that sees a
#: ``CancelledError`` with this message reports DEADLINE_EXCEEDED, not CANCELLED.
DEADLINE_CANCEL_MESSAGE = "deadline exceeded"


class StatusCode(enum.IntEnum):
    """gRPC's status codes, with the same numbers so logs and dashboards translate 1:1."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


#: Outcomes that say the instance (or the way to it) failed rather than the application: breakers
#: open on them, balancers and outlier ejection count them. RESOURCE_EXHAUSTED is not one: a server
#: shedding load is busy, not broken. Application answers (NOT_FOUND, ...) are successes here.
INSTANCE_FAILURES = frozenset(
    {
        StatusCode.UNAVAILABLE,
        StatusCode.DEADLINE_EXCEEDED,
        StatusCode.INTERNAL,
        StatusCode.UNKNOWN,
        StatusCode.DATA_LOSS,
    }
)
#: Refusals worth sending again (elsewhere, or later) when the server never processed the call;
#: INVALID_ARGUMENT and the like would only fail again.
RESENDABLE = frozenset({StatusCode.UNAVAILABLE, StatusCode.RESOURCE_EXHAUSTED})


class MeshkitError(Exception):
    """Base class of every exception meshkit raises on purpose."""


class RpcError(MeshkitError):
    """A call ended with a non-OK status.

    ``not_processed`` is True when meshkit knows the server never started the handler (the
    connection was refused, a GOAWAY turned the call away, a stream limit rejected it). Such a call
    is safe to retry even when the method is not idempotent.
    """

    __slots__ = ("code", "details", "message", "not_processed")

    def __init__(
        self,
        code: StatusCode,
        message: str = "",
        details: Any = None,
        *,
        not_processed: bool = False,
    ) -> None:
        super().__init__(code, message)
        self.code = StatusCode(code)
        self.message = message
        self.details = details
        self.not_processed = not_processed

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}" if self.message else self.code.name

    def __repr__(self) -> str:
        return f"RpcError({self.code.name}, {self.message!r})"

    def __reduce__(self) -> Any:
        return (_rebuild_rpc_error, (int(self.code), self.message, self.details, self.not_processed))


def _rebuild_rpc_error(code: int, message: str, details: Any, not_processed: bool) -> RpcError:
    return RpcError(StatusCode(code), message, details, not_processed=not_processed)


class AdmissionRefused(RpcError):
    """A call this server refused before its handler ran (a limit, a bulkhead, a switch...).

    This is the not-processed flag's meaning on the server side: only these (and the protocol's
    own refusals) keep ``not_processed`` on the way back to the caller, so a retry elsewhere is
    safe. An RpcError a handler raises (say, re-raised from a downstream call that was refused)
    is not evidence that the handler did nothing, so the server sends it as processed. Governance
    (``meshkit.policy``) raises these; the RPC layer only reads the type.
    """

    __slots__ = ()


class CoordinationError(RpcError):
    """A lock or an election could not do what was asked. Each subclass has its own status code,
    so a handler that lets one escape answers its caller with a code that means the same."""

    __slots__ = ()
    default_code = StatusCode.UNKNOWN

    def __init__(self, message: str, *, code: StatusCode | None = None) -> None:
        super().__init__(code if code is not None else self.default_code, message)

    def __reduce__(self) -> Any:
        return (_rebuild_coordination_error, (type(self), self.message, int(self.code)))


def _rebuild_coordination_error(kind: type[CoordinationError], message: str, code: int) -> CoordinationError:
    return kind(message, code=StatusCode(code))


class LockTimeout(CoordinationError):
    """The lock (or the leadership) was not granted within the ``wait`` asked for."""

    __slots__ = ()
    default_code = StatusCode.DEADLINE_EXCEEDED


class LockLost(CoordinationError):
    """The lease ended while it was held: renewal failed for longer than the TTL, the session
    expired, the engine said it belongs to someone else. Work done under it after that moment
    is not protected; a fencing token check (meshkit.coord.fencing) is what rejects it."""

    __slots__ = ()
    default_code = StatusCode.ABORTED


class EngineUnavailable(CoordinationError):
    """The engine behind a lock or an election cannot be reached (UNAVAILABLE; the message says
    how to start it) or refused our credentials (UNAUTHENTICATED)."""

    __slots__ = ()
    default_code = StatusCode.UNAVAILABLE


class VersionConflict(CoordinationError):
    """Every attempt of a versioned update met a newer version than the one it read (ABORTED:
    retrying the whole operation later may succeed)."""

    __slots__ = ()
    default_code = StatusCode.ABORTED


class BadLockRequest(CoordinationError, ValueError):
    """A lock name, a TTL, a wait or a backend URL that cannot be used; the message names it."""

    __slots__ = ()
    default_code = StatusCode.INVALID_ARGUMENT


class ConfigError(RpcError):
    """The configuration store could not do what was asked (meshkit.config). Each subclass has its
    own status code, as :class:`CoordinationError`'s do."""

    __slots__ = ()
    default_code = StatusCode.UNKNOWN

    def __init__(self, message: str, *, code: StatusCode | None = None) -> None:
        super().__init__(code if code is not None else self.default_code, message)

    def __reduce__(self) -> Any:
        return (_rebuild_config_error, (type(self), self.message, int(self.code)))


def _rebuild_config_error(kind: type[ConfigError], message: str, code: int) -> ConfigError:
    return kind(message, code=StatusCode(code))


class Conflict(ConfigError):
    """A compare-and-set write found the key at another revision than ``expect`` (ABORTED: read it
    again and retry). ``current`` is the revision it found (0: the key does not exist)."""

    __slots__ = ("current",)
    default_code = StatusCode.ABORTED

    def __init__(self, message: str, *, current: int = 0, code: StatusCode | None = None) -> None:
        super().__init__(message, code=code)
        self.current = current
        self.details = {"current": current}  # travels with the error over RPC (meshkit://)

    def __reduce__(self) -> Any:
        return (_rebuild_conflict, (self.message, self.current))


def _rebuild_conflict(message: str, current: int) -> Conflict:
    return Conflict(message, current=current)


class Compacted(ConfigError):
    """A watch asked for revisions the store no longer keeps (OUT_OF_RANGE): list the prefix again
    and watch from the revision the listing gives."""

    __slots__ = ()
    default_code = StatusCode.OUT_OF_RANGE


class ConfigUnavailable(ConfigError):
    """The engine behind a configuration store cannot be reached (UNAVAILABLE; the message says
    how to start it)."""

    __slots__ = ()
    default_code = StatusCode.UNAVAILABLE


class BadConfigRequest(ConfigError, ValueError):
    """A key, a prefix, a value, a revision or a store URL that cannot be used; the message names
    it (INVALID_ARGUMENT; RESOURCE_EXHAUSTED for a value over the size limit)."""

    __slots__ = ()
    default_code = StatusCode.INVALID_ARGUMENT


class ProtocolError(MeshkitError):
    """The peer sent bytes that break the wire protocol; only that connection is closed.

    ``code`` is the status reported to the peer in the GOAWAY that precedes the close.
    """

    code: StatusCode = StatusCode.INTERNAL


class BadMagic(ProtocolError):
    """The first bytes of a frame are not meshkit's magic: the peer speaks another protocol.
    ``preview`` holds the first bytes it sent there (what a person needs to tell which one)."""

    preview: bytes = b""


class UnsupportedVersion(ProtocolError):
    """The frame carries a protocol version this build does not speak."""

    code = StatusCode.UNIMPLEMENTED


class UnknownFrameType(ProtocolError):
    """The frame type byte names no frame type of this protocol version."""

    code = StatusCode.UNIMPLEMENTED


class FrameTooLarge(ProtocolError):
    """A frame's declared body is over the receiver's limit; refused before reading it."""

    code = StatusCode.RESOURCE_EXHAUSTED


class MetadataTooLarge(ProtocolError):
    """A frame's declared metadata is over the receiver's limit; refused before reading it."""

    code = StatusCode.RESOURCE_EXHAUSTED


class MalformedFrame(ProtocolError):
    """A frame is structurally wrong: reserved bits set, bad metadata, a body where none belongs."""


class InternalError(ProtocolError):
    """This side failed while handling a frame (a bug); the connection is closed with this code."""
