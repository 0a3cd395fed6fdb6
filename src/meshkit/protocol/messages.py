"""Bodies of the control frames (ERROR, GOAWAY, PING/PONG, CREDIT) and their codecs."""

from __future__ import annotations

import struct
from typing import Any

import msgspec

from meshkit.errors import MalformedFrame, RpcError, StatusCode
from meshkit.protocol.frames import MAX_STREAM_ID


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
_STATUS_VALUES = frozenset(int(c) for c in StatusCode)


def encode_error(code: StatusCode, message: str, details: Any = None) -> bytes:
    try:
        return _error_encoder.encode(ErrorBody(int(code), message, details))
    except (TypeError, ValueError, OverflowError, RecursionError):
        # Details that cannot be serialized must not turn an error into a crash.
        try:
            text = repr(details)
        except RecursionError:
            text = f"<unencodable {type(details).__name__}>"
        return _error_encoder.encode(ErrorBody(int(code), message, text))


def decode_error(body: bytes, *, not_processed: bool = False) -> RpcError:
    """The :class:`RpcError` an ERROR frame describes; garbage becomes an INTERNAL error."""
    try:
        err = _error_decoder.decode(body)
        code = StatusCode(err.code)
    except (msgspec.DecodeError, ValueError, RecursionError) as exc:
        # ValueError covers unknown codes and invalid UTF-8; RecursionError absurdly deep details.
        return RpcError(StatusCode.INTERNAL, f"peer sent an unreadable ERROR frame: {type(exc).__name__}: {exc}")
    return RpcError(code, err.message, err.details, not_processed=not_processed)


def encode_goaway(last_stream_id: int, code: StatusCode = StatusCode.OK, message: str = "") -> bytes:
    return _error_encoder.encode(GoAwayBody(last_stream_id, int(code), message))


def decode_goaway(body: bytes) -> GoAwayBody:
    try:
        goaway = _goaway_decoder.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise MalformedFrame(f"unreadable GOAWAY body: {type(exc).__name__}: {exc}") from None
    if not 0 <= goaway.last_stream_id <= MAX_STREAM_ID:
        raise MalformedFrame(f"GOAWAY last_stream_id {goaway.last_stream_id} is outside 0..{MAX_STREAM_ID}")
    if goaway.code not in _STATUS_VALUES:
        raise MalformedFrame(f"GOAWAY code {goaway.code} is not a status code")
    return goaway


def encode_credit(credit: int) -> bytes:
    return _U32.pack(credit)


def decode_credit(body: bytes) -> int:
    if len(body) != 4:
        raise MalformedFrame(f"CREDIT body must be 4 bytes, got {len(body)}")
    value: int = _U32.unpack(body)[0]
    return value
