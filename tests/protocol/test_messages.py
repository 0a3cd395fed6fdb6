"""Bodies of the control frames: ERROR, GOAWAY and CREDIT."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshkit.errors import MalformedFrame, ProtocolError, RpcError, StatusCode
from meshkit.protocol.frames import MAX_STREAM_ID
from meshkit.protocol.messages import (
    GoAwayBody,
    decode_credit,
    decode_error,
    decode_goaway,
    encode_credit,
    encode_error,
    encode_goaway,
)

pack = msgspec.msgpack.encode
DEEP = b"\x91" * 5000 + b"\x00"  # 5000 nested one-element arrays: 5 KB, far inside any frame limit
DEEP_MAP = b"\x81\xa0" * 5000 + b"\x00"  # 5000 nested one-entry maps {"": {"": ...}}


# -- ERROR ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("code", list(StatusCode))
def test_error_round_trip_every_code(code: StatusCode) -> None:
    err = decode_error(encode_error(code, f"failed with {code.name}"))
    assert isinstance(err, RpcError)
    assert err.code is code
    assert err.message == f"failed with {code.name}"
    assert err.details is None
    assert err.not_processed is False


@pytest.mark.parametrize(
    "details",
    [
        None,
        "text",
        42,
        -1.5,
        True,
        [1, "two", None],
        {"field": "name", "reason": "too long"},
        {"nested": {"a": [1, {"b": 2}]}},
    ],
    ids=repr,
)
def test_error_round_trip_details(details: Any) -> None:
    err = decode_error(encode_error(StatusCode.INVALID_ARGUMENT, "bad", details))
    assert err.details == details


@pytest.mark.parametrize("not_processed", [False, True])
def test_decode_error_carries_not_processed(not_processed: bool) -> None:
    err = decode_error(encode_error(StatusCode.UNAVAILABLE, "later"), not_processed=not_processed)
    assert err.not_processed is not_processed


def test_error_body_is_a_msgpack_map_that_omits_defaults() -> None:
    assert msgspec.msgpack.decode(encode_error(StatusCode.NOT_FOUND, "")) == {"code": 5}
    assert msgspec.msgpack.decode(encode_error(StatusCode.NOT_FOUND, "m", [1])) == {
        "code": 5,
        "message": "m",
        "details": [1],
    }


def test_unserializable_details_become_their_repr() -> None:
    class Opaque:
        def __repr__(self) -> str:
            return "<opaque>"

    err = decode_error(encode_error(StatusCode.INTERNAL, "m", Opaque()))
    assert (err.code, err.message, err.details) == (StatusCode.INTERNAL, "m", "<opaque>")


def _cyclic() -> list[Any]:
    items: list[Any] = []
    items.append(items)
    return items


def _deep_list(depth: int) -> list[Any]:
    items: list[Any] = []
    for _ in range(depth):
        items = [items]
    return items


@pytest.mark.parametrize(
    ("details", "sent"),
    [
        (2**64, str(2**64)),  # OverflowError in msgspec
        (2**70, str(2**70)),
        (-(2**63) - 1, str(-(2**63) - 1)),
        ({"n": 2**70}, repr({"n": 2**70})),
        (_cyclic(), "[[...]]"),  # RecursionError in msgspec
        (_deep_list(100_000), "<unencodable list>"),  # RecursionError in msgspec and in repr()
    ],
    ids=["2^64", "2^70", "-2^63-1", "nested-big", "cyclic", "too-deep-to-repr"],
)
def test_details_msgspec_refuses_are_sent_as_a_string(details: Any, sent: str) -> None:
    body = encode_error(StatusCode.NOT_FOUND, "m", details)
    assert msgspec.msgpack.decode(body) == {"code": 5, "message": "m", "details": sent}
    err = decode_error(body)
    assert (err.code, err.message, err.details) == (StatusCode.NOT_FOUND, "m", sent)


@given(
    code=st.sampled_from(list(StatusCode)),
    message=st.text(),
    details=st.recursive(
        st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text(),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
        max_leaves=10,
    ),
)
def test_error_round_trip_any(code: StatusCode, message: str, details: Any) -> None:
    err = decode_error(encode_error(code, message, details))
    assert (err.code, err.message, err.details) == (code, message, details)


GARBAGE_ERRORS = {
    "empty": b"",
    "invalid-opcode": b"\xc1",
    "truncated": encode_error(StatusCode.NOT_FOUND, "message")[:-3],
    "array": pack([5, "m"]),
    "string": pack("oops"),
    "missing-code": pack({"message": "no code"}),
    "code-is-str": pack({"code": "NOT_FOUND"}),
    "code-99": pack({"code": 99}),
    "code-negative": pack({"code": -1}),
    "code-u64-max": pack({"code": 2**64 - 1}),
    "message-is-int": pack({"code": 5, "message": 7}),
    "trailing-bytes": encode_error(StatusCode.NOT_FOUND, "m") + b"\x00",
    "invalid-utf8-message": b"\x82\xa4code\x05\xa7message\xa1\xff",
}


@pytest.mark.parametrize("body", list(GARBAGE_ERRORS.values()), ids=list(GARBAGE_ERRORS))
def test_garbage_error_body_becomes_internal(body: bytes) -> None:
    err = decode_error(body)
    assert isinstance(err, RpcError)
    assert err.code is StatusCode.INTERNAL
    assert "unreadable ERROR frame" in err.message


@settings(max_examples=500)
@given(body=st.binary(max_size=200))
def test_decode_error_never_raises(body: bytes) -> None:
    assert isinstance(decode_error(body), RpcError)


@pytest.mark.parametrize("deep", [DEEP, DEEP_MAP], ids=["arrays", "maps"])
def test_deeply_nested_error_details_become_internal(deep: bytes) -> None:
    err = decode_error(b"\x82\xa4code\x05\xa7details" + deep)
    assert isinstance(err, RpcError)
    assert err.code is StatusCode.INTERNAL
    assert "unreadable ERROR frame" in err.message
    assert err.details is None


# -- GOAWAY ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("last_stream_id", [0, 1, 2**31, MAX_STREAM_ID])
@pytest.mark.parametrize("code", [StatusCode.OK, StatusCode.UNAVAILABLE, StatusCode.RESOURCE_EXHAUSTED])
@pytest.mark.parametrize("message", ["", "shutting down", "ünïcødé"])
def test_goaway_round_trip(last_stream_id: int, code: StatusCode, message: str) -> None:
    body = decode_goaway(encode_goaway(last_stream_id, code, message))
    assert body == GoAwayBody(last_stream_id, int(code), message)


def test_goaway_defaults() -> None:
    assert msgspec.msgpack.decode(encode_goaway(7)) == {"last_stream_id": 7}
    assert decode_goaway(pack({"last_stream_id": 7})) == GoAwayBody(7, 0, "")


def test_goaway_ignores_unknown_keys() -> None:
    assert decode_goaway(pack({"last_stream_id": 3, "future": [1, 2]})) == GoAwayBody(3, 0, "")


GARBAGE_GOAWAYS = {
    "empty": b"",
    "invalid-opcode": b"\xc1",
    "truncated": encode_goaway(5, StatusCode.UNAVAILABLE, "bye")[:-2],
    "array": pack([5, 0, ""]),
    "missing-last-stream-id": pack({"code": 0}),
    "last-stream-id-is-str": pack({"last_stream_id": "5"}),
    "code-is-str": pack({"last_stream_id": 5, "code": "OK"}),
    "trailing-bytes": encode_goaway(5) + b"\x00",
}


@pytest.mark.parametrize("body", list(GARBAGE_GOAWAYS.values()), ids=list(GARBAGE_GOAWAYS))
def test_garbage_goaway_raises_malformed_frame(body: bytes) -> None:
    with pytest.raises(MalformedFrame):
        decode_goaway(body)


def test_invalid_utf8_in_goaway_message_raises_malformed_frame() -> None:
    with pytest.raises(MalformedFrame):
        decode_goaway(b"\x82\xaelast_stream_id\x01\xa7message\xa1\xff")


@pytest.mark.parametrize("deep", [DEEP, DEEP_MAP], ids=["arrays", "maps"])
def test_deeply_nested_unknown_goaway_key_raises_malformed_frame(deep: bytes) -> None:
    with pytest.raises(MalformedFrame, match="unreadable GOAWAY body"):
        decode_goaway(b"\x82\xaelast_stream_id\x01\xa5extra" + deep)


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"last_stream_id": 1, "code": 17}, "code 17"),
        ({"last_stream_id": 1, "code": 99}, "code 99"),
        ({"last_stream_id": 1, "code": -1}, "code -1"),
        ({"last_stream_id": -1}, "last_stream_id -1"),
        ({"last_stream_id": 2**32}, f"last_stream_id {2**32}"),
        ({"last_stream_id": 2**64 - 1}, f"last_stream_id {2**64 - 1}"),
    ],
    ids=["code-17", "code-99", "code-negative", "sid-negative", "sid-2^32", "sid-u64-max"],
)
def test_goaway_fields_out_of_range_raise_malformed_frame(fields: dict[str, int], match: str) -> None:
    with pytest.raises(MalformedFrame, match=match):
        decode_goaway(pack(fields))


@pytest.mark.parametrize("code", list(StatusCode))
def test_goaway_accepts_every_status_code_up_to_the_largest_stream_id(code: StatusCode) -> None:
    assert decode_goaway(pack({"last_stream_id": MAX_STREAM_ID, "code": int(code)})) == GoAwayBody(
        MAX_STREAM_ID, int(code), ""
    )


@settings(max_examples=500)
@given(body=st.binary(max_size=200))
def test_decode_goaway_raises_only_protocol_errors(body: bytes) -> None:
    try:
        decoded = decode_goaway(body)
    except ProtocolError:
        return
    assert isinstance(decoded, GoAwayBody)
    assert decoded.code in set(StatusCode)
    assert 0 <= decoded.last_stream_id <= MAX_STREAM_ID


# -- CREDIT ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("credit", [0, 1, 64, 2**16, 2**32 - 1])
def test_credit_round_trip(credit: int) -> None:
    body = encode_credit(credit)
    assert len(body) == 4
    assert body == credit.to_bytes(4, "big")
    assert decode_credit(body) == credit


@pytest.mark.parametrize("length", [0, 1, 3, 5, 8])
def test_credit_body_must_be_four_bytes(length: int) -> None:
    with pytest.raises(MalformedFrame, match=str(length)):
        decode_credit(b"\x01" * length)


@given(credit=st.integers(0, 2**32 - 1))
def test_credit_round_trip_any(credit: int) -> None:
    assert decode_credit(encode_credit(credit)) == credit
