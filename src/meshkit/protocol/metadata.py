"""Frame metadata: a small msgpack map of str to scalar (str, int, float, bool or None).

Well-known keys (others pass through untouched, so users can carry their own):

========== ======================================================================
service    the target service name (REQUEST)
method     the target method name (REQUEST)
deadline   remaining time budget in milliseconds, an int (REQUEST)
traceparent / tracestate   W3C trace context
authorization              an auth token, forwarded as given
caller     the calling service's name
request-id an id that appears in every access-log line of the call
========== ======================================================================
"""

from __future__ import annotations

from typing import Final, TypeAlias

import msgspec

from meshkit.errors import MalformedFrame

MetadataValue: TypeAlias = str | int | float | bool | None
Metadata: TypeAlias = dict[str, MetadataValue]

SERVICE: Final = "service"
METHOD: Final = "method"
DEADLINE: Final = "deadline"
TRACEPARENT: Final = "traceparent"
TRACESTATE: Final = "tracestate"
AUTHORIZATION: Final = "authorization"
CALLER: Final = "caller"
REQUEST_ID: Final = "request-id"

_decoder = msgspec.msgpack.Decoder(Metadata)
encode_metadata = msgspec.msgpack.Encoder().encode


def decode_metadata(raw: bytes) -> Metadata:
    """Decode and validate a metadata map; anything else is a :class:`MalformedFrame`."""
    if not raw:
        return {}
    try:
        return _decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise MalformedFrame(f"metadata must be a map of string to scalar: {exc}") from None
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        # msgspec reports invalid UTF-8 in a str as UnicodeDecodeError, not DecodeError.
        raise MalformedFrame(f"metadata is not valid msgpack: {exc}") from None


class MetadataTemplate:
    """Pre-encoded metadata for one method: the fixed keys are encoded once, and each call only
    appends its deadline and any extra keys. Saves a dict build and a full encode per call."""

    __slots__ = ("_count", "_entries", "last")

    def __init__(self, fixed: Metadata) -> None:
        self._count = len(fixed)
        self._entries = _strip_map_header(encode_metadata(fixed))
        #: (deadline_ms, bytes) of the last render without extra keys; callers may check it first.
        self.last: tuple[int | None, bytes] = (-1, b"")

    def render(self, deadline_ms: int | None = None, extra: Metadata | None = None) -> bytes:
        if not extra:
            # Calls with the same timeout mostly send the same remaining budget: reuse the bytes.
            last = self.last
            if last[0] == deadline_ms:
                return last[1]
            rendered = self._render(deadline_ms, None)
            self.last = (deadline_ms, rendered)
            return rendered
        return self._render(deadline_ms, extra)

    def _render(self, deadline_ms: int | None, extra: Metadata | None) -> bytes:
        count = self._count
        parts = [b"", self._entries]
        if deadline_ms is not None:
            count += 1
            parts.append(_DEADLINE_KEY)
            parts.append(encode_metadata(deadline_ms))
        if extra:
            count += len(extra)
            parts.append(_strip_map_header(encode_metadata(extra)))
        parts[0] = _map_header(count)
        return b"".join(parts)


_DEADLINE_KEY = encode_metadata(DEADLINE)


def _map_header(count: int) -> bytes:
    if count < 16:
        return bytes((0x80 | count,))
    if count < 0x10000:
        return b"\xde" + count.to_bytes(2, "big")
    return b"\xdf" + count.to_bytes(4, "big")


def _strip_map_header(encoded: bytes) -> bytes:
    first = encoded[0]
    if 0x80 <= first <= 0x8F:
        return encoded[1:]
    if first == 0xDE:
        return encoded[3:]
    if first == 0xDF:
        return encoded[5:]
    raise ValueError("not a msgpack map")
