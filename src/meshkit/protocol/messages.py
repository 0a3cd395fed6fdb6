"""Bodies of the control frames (ERROR, GOAWAY, PING/PONG, CREDIT) and their codecs."""

from __future__ import annotations

import struct
from typing import Any

import msgspec

from meshkit.errors import MalformedFrame, RpcError, StatusCode


class ErrorBody(msgspec.Struct, omit_defaults=True):
    """Body of an ERROR frame."""

    code: int
    message: str = ""
    details: Any = None


class GoAwayBody(msgspec.Struct, omit_defaults=True):
    """Body of a GOAWAY frame: streams above ``last_stream_id`` were not and will not be processed."""

    last_stream_id: int
    code: int = 0
    message: str = ""


_error_encoder = msgspec.msgpack.Encoder()
_error_decoder = msgspec.msgpack.Decoder(ErrorBody)
_goaway_decoder = msgspec.msgpack.Decoder(GoAwayBody)
_U32 = struct.Struct(">I")


def encode_error(code: StatusCode, message: str, details: Any = None) -> bytes:
    try:
        return _error_encoder.encode(ErrorBody(int(code), message, details))
    except (TypeError, ValueError):
        # Details that cannot be serialized must not turn an error into a crash.
        return _error_encoder.encode(ErrorBody(int(code), message, repr(details)))


def decode_error(body: bytes, *, not_processed: bool = False) -> RpcError:
    """The :class:`RpcError` an ERROR frame describes; garbage becomes an INTERNAL error."""
    try:
        err = _error_decoder.decode(body)
        code = StatusCode(err.code)
    except (msgspec.DecodeError, ValueError) as exc:
        return RpcError(StatusCode.INTERNAL, f"peer sent an unreadable ERROR frame: {exc}")
    return RpcError(code, err.message, err.details, not_processed=not_processed)


def encode_goaway(last_stream_id: int, code: StatusCode = StatusCode.OK, message: str = "") -> bytes:
    return _error_encoder.encode(GoAwayBody(last_stream_id, int(code), message))


def decode_goaway(body: bytes) -> GoAwayBody:
    try:
        return _goaway_decoder.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise MalformedFrame(f"unreadable GOAWAY body: {exc}") from None


def encode_credit(credit: int) -> bytes:
    return _U32.pack(credit)


def decode_credit(body: bytes) -> int:
    if len(body) != 4:
        raise MalformedFrame(f"CREDIT body must be 4 bytes, got {len(body)}")
    value: int = _U32.unpack(body)[0]
    return value
