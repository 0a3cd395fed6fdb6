"""What a call is sent with (timeout, metadata, encoding, routing hints), and its deadline.

Built once per proxy (``client.proxy(...).with_options(...)``) and shared by every call it makes,
so a call pays for none of it.
"""

from __future__ import annotations

from typing import Any

import msgspec

from meshkit.protocol.metadata import MetadataValue
from meshkit.rpc.context import _current

DEFAULT_TIMEOUT = 10.0


class _Unset:
    pass


#: "Not given": keeps the proxy's or client's value (None means "no timeout").
UNSET: Any = _Unset()


class CallOptions(msgspec.Struct, frozen=True):
    timeout: float | None
    metadata: dict[str, MetadataValue]
    compression: bool
    json: bool
    hash_key: str | None = None
    balancer: str | None = None  # per-call choice; None: the client's
    fallbacks: dict[str, Any] | None = None  # method attribute -> client-side fallback
    plain: bool = False  # msgpack, uncompressed: the fast path

    def __post_init__(self) -> None:
        msgspec.structs.force_setattr(self, "plain", not self.json and not self.compression)


def effective_deadline(now: float, timeout: float | None) -> float | None:
    """A call's deadline: its own budget, but never past the deadline of the call being handled
    (a call made inside a handler inherits what its caller has left)."""
    ctx = _current.get()
    inherited = ctx.deadline if ctx is not None else None
    if timeout is None:
        return inherited
    own = now + timeout
    return own if inherited is None or own < inherited else inherited


def parse_target(target: str) -> list[tuple[str, int]]:
    """``"h1:7001,h2:7002"`` -> [(h1, 7001), (h2, 7002)], with errors that say which part is wrong."""
    out: list[tuple[str, int]] = []
    for part in target.split(","):
        part = part.strip()
        if not part:
            continue
        host, sep, port = part.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"bad target {part!r}: expected HOST:PORT")
        out.append((host.strip("[]"), int(port)))
    if not out:
        raise ValueError(f"target {target!r} names no HOST:PORT")
    return out
