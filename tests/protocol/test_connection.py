"""The sans-IO connection: a client and a server Connection wired back to back in memory.

Nothing here has a socket or an event loop: bytes one side's ``send_*`` returns (and its
``outgoing`` queue) are fed to the other side's ``receive``, as the asyncio adapters do.
"""

from __future__ import annotations

import zlib
from typing import Any

import msgspec
import pytest

from meshkit.errors import BadMagic, MalformedFrame, RpcError, StatusCode
from meshkit.protocol.connection import (
    OPENING_PING,
    Cancelled,
    Connection,
    ConnectionBroken,
    CreditGranted,
    GoAwayReceived,
    PongReceived,
    Role,
    decode_error_frame,
)
from meshkit.protocol.decoder import FrameDecoder
from meshkit.protocol.frames import TRACE_CONTEXT_SIZE, Flags, Frame, FrameType, encode_frame
from meshkit.protocol.keepalive import KeepaliveAction, KeepaliveConfig
from meshkit.protocol.limits import Limits
from meshkit.protocol.messages import decode_goaway, encode_credit, encode_error
from meshkit.protocol.metadata import encode_metadata
from meshkit.protocol.states import StreamState

MD = encode_metadata({"service": "greeter", "method": "hello"})
TRACE = bytes(range(TRACE_CONTEXT_SIZE))


class Pair:
    """A client and a server connection; ``to_server``/``to_client`` deliver bytes."""

    def __init__(self, server_limits: Limits | None = None, client_limits: Limits | None = None) -> None:
        self.client = Connection(Role.CLIENT, client_limits)
        self.server = Connection(Role.SERVER, server_limits)

    def to_server(self, data: bytes) -> list[Any]:
        return self.server.receive(data)

    def to_client(self, data: bytes) -> list[Any]:
        return self.client.receive(data)

    def server_answers(self) -> list[Any]:
        """What the server queued by itself (refusals, PONG, GOAWAY), delivered to the client."""
        return self.to_client(self.server.take_outgoing())


def frames_of(data: bytes) -> list[Frame]:
    return FrameDecoder().feed(data)


def test_a_unary_call_opens_one_stream_on_each_side_and_the_answer_closes_both() -> None:
    pair = Pair()
    sid, data = pair.client.send_request(MD, b"\x91\xa3ann", attachment="call-1")
    assert sid == 1 and pair.client.state(sid) is StreamState.OPEN
    [request] = pair.to_server(data)
    assert (request.type, request.stream_id, request.metadata, request.body) == (
        FrameType.REQUEST,
        1,
        MD,
        b"\x91\xa3ann",
    )
    assert pair.server.state(1) is StreamState.OPEN and pair.server.last_stream_id == 1
    [(answered, frame, attachment)] = pair.to_client(pair.server.send_response(1, b"\xa9hello ann"))
    assert (answered, frame.type, frame.body, attachment) == (1, FrameType.RESPONSE, b"\xa9hello ann", "call-1")
    assert pair.client.streams == {} and pair.server.streams == {}


def test_stream_ids_grow_skip_open_ones_and_wrap_below_the_reserved_maximum() -> None:
    client = Connection(Role.CLIENT)
    ids = [client.send_request(MD, b"")[0] for _ in range(3)]
    assert ids == [1, 2, 3]
    client._next_id = 0xFFFFFFFE
    assert client.send_request(MD, b"")[0] == 0xFFFFFFFE
    assert client.send_request(MD, b"")[0] == 4  # wrapped past 0xFFFFFFFF and the open 1, 2, 3


def test_the_trace_context_trails_the_metadata_and_the_server_splits_it_off() -> None:
    pair = Pair()
    _, data = pair.client.send_request(MD, b"", trace=TRACE)
    [wire] = frames_of(data)
    assert wire.flags & Flags.TRACE and wire.metadata == MD + TRACE
    [request] = pair.to_server(data)
    assert (request.trace, request.metadata, request.flags & Flags.TRACE) == (TRACE, MD, 0)
    with pytest.raises(ValueError, match="25 bytes"):
        pair.client.send_request(MD, b"", trace=b"short")
    assert list(pair.client.streams) == [1]  # the refused request left nothing open


def test_a_trace_flag_on_metadata_shorter_than_a_trace_context_breaks_the_connection() -> None:
    pair = Pair()
    [broken] = pair.to_server(encode_frame(FrameType.REQUEST, 1, b"", b"\x80", Flags.TRACE))
    assert isinstance(broken, ConnectionBroken) and "TRACE flag" in str(broken.error)


def test_bodies_worth_compressing_are_compressed_and_inflated_on_receipt() -> None:
    pair = Pair()
    big = b"x" * 5000
    _, data = pair.client.send_request(MD, big, compressed=True)
    assert len(data) < 200
    [request] = pair.to_server(data)
    assert request.body == big and request.flags & Flags.COMPRESSED  # the flag says: answer compressed
    answer = pair.server.send_response(1, big, compressed=True)
    assert len(answer) < 200
    [(_, frame, _)] = pair.to_client(answer)
    assert frame.body == big and frame.flags == 0
    _, small = pair.client.send_request(MD, b"tiny", compressed=True)
    assert not frames_of(small)[0].flags & Flags.COMPRESSED  # not worth it under MIN_COMPRESS_SIZE


def test_the_frame_limit_is_checked_on_what_goes_on_the_wire_before_a_stream_opens() -> None:
    pair = Pair(client_limits=Limits(max_frame_size=1000), server_limits=Limits(max_frame_size=1000))
    with pytest.raises(RpcError) as info:
        pair.client.send_request(MD, b"x" * 5000)
    assert info.value.code is StatusCode.RESOURCE_EXHAUSTED and "request of 5000 bytes" in info.value.message
    assert pair.client.streams == {}  # nothing opened, no stream id spent
    sid, data = pair.client.send_request(MD, b"x" * 5000, compressed=True)  # compresses under the limit
    assert sid == 1
    [request] = pair.to_server(data)
    assert request.body == b"x" * 5000


def test_an_answer_over_the_frame_limit_becomes_an_error_for_that_call_only() -> None:
    pair = Pair(server_limits=Limits(max_frame_size=1000))
    sid, data = pair.client.send_request(MD, b"", attachment="big")
    pair.to_server(data)
    [(_, frame, attachment)] = pair.to_client(pair.server.send_response(sid, bytes(range(256)) * 8))
    error = decode_error_frame(frame)
    assert attachment == "big" and error.code is StatusCode.RESOURCE_EXHAUSTED
    assert "result of 2048 bytes is over the 1000-byte frame limit" in error.message
    assert pair.server.streams == {} and not pair.client.closed  # the connection goes on


def test_a_stream_message_over_the_frame_limit_raises_and_keeps_the_credit() -> None:
    pair = Pair(server_limits=Limits(max_frame_size=100))
    sid, data = pair.client.send_request(MD, b"", window=2)
    pair.to_server(data)
    pair.server.open_credit(sid, 2)
    with pytest.raises(RpcError) as info:
        pair.server.send_stream_data(sid, b"x" * 101)
    assert info.value.code is StatusCode.RESOURCE_EXHAUSTED
    assert pair.server.credit(sid) == 2


def test_a_request_body_that_does_not_inflate_is_refused_as_not_processed() -> None:
    pair = Pair(server_limits=Limits(max_decompressed_size=1000))
    bomb = zlib.compress(b"\0" * 100_000)
    assert pair.to_server(encode_frame(FrameType.REQUEST, 1, bomb, MD, Flags.COMPRESSED)) == []
    assert pair.to_server(encode_frame(FrameType.REQUEST, 3, b"not zlib", MD, Flags.COMPRESSED)) == []
    assert pair.server.streams == {}
    refusals = frames_of(pair.server.take_outgoing())
    errors = [decode_error_frame(f) for f in refusals]
    assert [f.stream_id for f in refusals] == [1, 3]
    assert all(e.code is StatusCode.INVALID_ARGUMENT and e.not_processed for e in errors)
    assert "past the limit of 1000 bytes" in errors[0].message and "corrupt" in errors[1].message


def test_a_ping_is_answered_by_the_connection_itself_and_a_pong_is_an_event() -> None:
    pair = Pair()
    assert pair.to_server(OPENING_PING) == []
    assert pair.server_answers() == [PongReceived(b"MK\r\n\r\n\r\n")]


def test_goaway_refuses_later_calls_and_hands_the_client_the_ones_the_server_never_saw() -> None:
    pair = Pair()
    _, first = pair.client.send_request(MD, b"", attachment="seen")
    pair.to_server(first)
    _, second = pair.client.send_request(MD, b"", attachment="unseen")  # in flight as GOAWAY leaves
    goaway = pair.server.send_goaway()
    assert pair.server.draining and decode_goaway(frames_of(goaway)[0].body).last_stream_id == 1
    [event] = pair.to_client(goaway)
    assert event == GoAwayReceived(1, 0, "", ("unseen",))
    assert pair.client.draining and list(pair.client.streams) == [1]
    assert pair.to_server(second) == []  # refused, not dispatched
    refusal = pair.server.take_outgoing()
    error = decode_error_frame(frames_of(refusal)[0])
    assert error.code is StatusCode.UNAVAILABLE and error.not_processed
    assert pair.to_client(refusal) == []  # the client failed stream 2 at the GOAWAY already
    assert pair.client.streams == {1: "seen"}
    answer = pair.server.send_response(1, b"\xc0")
    assert pair.to_client(answer) == [(1, frames_of(answer)[0], "seen")]


def test_requests_past_the_stream_limit_are_refused_as_not_processed() -> None:
    pair = Pair(server_limits=Limits(max_concurrent_streams=2))
    data = b"".join(pair.client.send_request(MD, b"")[1] for _ in range(3))
    events = pair.to_server(data)
    assert [e.stream_id for e in events] == [1, 2]
    [(_, frame, _)] = pair.server_answers()
    error = decode_error_frame(frame)
    assert frame.stream_id == 3 and error.code is StatusCode.RESOURCE_EXHAUSTED and error.not_processed
    assert "limit 2" in error.message


def test_a_server_stream_sends_only_what_the_caller_granted() -> None:
    pair = Pair()
    sid, data = pair.client.send_request(MD, b"", attachment="stream", window=2)
    [request] = pair.to_server(data)
    assert request.flags & Flags.STREAM
    pair.server.open_credit(sid, 2)
    sent = [pair.server.send_stream_data(sid, b"\x01"), pair.server.send_stream_data(sid, b"\x02")]
    assert pair.server.state(sid) is StreamState.STREAMING and pair.server.credit(sid) == 0
    with pytest.raises(RuntimeError, match="no credit"):
        pair.server.send_stream_data(sid, b"\x03")
    events = pair.to_client(b"".join(sent))
    assert [(e[0], e[1].body, e[2]) for e in events] == [(sid, b"\x01", "stream"), (sid, b"\x02", "stream")]
    assert pair.client.state(sid) is StreamState.STREAMING
    pair.server.attach(sid, "sink")
    assert pair.to_server(pair.client.send_credit(sid, 2)) == [CreditGranted(sid, "sink")]
    assert pair.server.credit(sid) == 2
    [(_, end, _)] = pair.to_client(pair.server.send_stream_end(sid))
    assert end.type == FrameType.STREAM_END and pair.client.streams == {} and pair.server.streams == {}
    assert pair.client.send_credit(sid, 1) == b""  # the stream ended: nothing to grant


def test_a_peer_that_streams_past_the_granted_credit_breaks_the_connection() -> None:
    pair = Pair()
    sid, _ = pair.client.send_request(MD, b"", window=1)
    rogue = b"".join(encode_frame(FrameType.STREAM_DATA, sid, b"\x01") for _ in range(2))
    events = pair.to_client(rogue)
    assert len(events) == 2 and isinstance(events[1], ConnectionBroken)
    assert "more messages than the granted credit" in str(events[1].error)
    assert pair.client.receive(encode_frame(FrameType.PONG, 0, b"")) == []  # broken: takes nothing more


def test_a_cancel_closes_the_stream_on_both_sides_and_a_late_answer_is_dropped() -> None:
    pair = Pair()
    sid, data = pair.client.send_request(MD, b"")
    pair.to_server(data)
    pair.server.attach(sid, "handler")
    cancel = pair.client.send_cancel(sid)
    assert pair.client.send_cancel(sid) == b""  # once
    assert pair.to_server(cancel) == [Cancelled(sid, "handler")]
    assert pair.server.streams == {}
    assert pair.to_client(pair.server.send_response(sid, b"\xc0")) == []


def test_a_cancel_read_together_with_its_request_makes_attach_report_the_stream_closed() -> None:
    pair = Pair()
    sid, data = pair.client.send_request(MD, b"")
    request, cancelled = pair.to_server(data + pair.client.send_cancel(sid))
    assert request.stream_id == sid and cancelled == Cancelled(sid, None)
    assert pair.server.attach(sid, "handler") is False  # the dispatcher cancels what it started


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (encode_frame(FrameType.REQUEST, 0, b"", MD), "REQUEST on stream 0"),
        (encode_frame(FrameType.RESPONSE, 1), "a client does not send RESPONSE frames"),
        (encode_frame(FrameType.STREAM_DATA, 1), "a client does not send STREAM_DATA frames"),
        (encode_frame(FrameType.GOAWAY, 0, b"\xc1"), "unreadable GOAWAY"),
        (encode_frame(FrameType.CREDIT, 1, b""), None),  # credit for no open stream: ignored
    ],
)
def test_what_a_server_refuses_to_read(frame: bytes, message: str | None) -> None:
    server = Connection(Role.SERVER)
    events = server.receive(frame)
    if message is None:
        assert events == [] and not server.closed
        return
    [broken] = events
    assert isinstance(broken, ConnectionBroken) and message in str(broken.error)
    assert server.closed
    [goaway] = frames_of(server.take_outgoing())
    body = decode_goaway(goaway.body)
    assert goaway.type == FrameType.GOAWAY and body.code == broken.error.code and message in body.message


def test_a_request_reusing_an_open_stream_breaks_the_connection_after_the_frames_before_it() -> None:
    server = Connection(Role.SERVER)
    request = encode_frame(FrameType.REQUEST, 7, b"", MD)
    first, broken = server.receive(request + request)
    assert first.stream_id == 7 and "reuses stream 7" in str(broken.error)
    assert decode_goaway(frames_of(server.take_outgoing())[0].body).last_stream_id == 7


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (encode_frame(FrameType.REQUEST, 1, b"", MD), "a server does not send REQUEST frames"),
        (encode_frame(FrameType.CANCEL, 1), "a server does not send CANCEL frames"),
        (encode_frame(FrameType.CREDIT, 1, encode_credit(1)), "a server does not send CREDIT frames"),
    ],
)
def test_what_a_client_refuses_to_read(frame: bytes, message: str) -> None:
    [broken] = Connection(Role.CLIENT).receive(frame)
    assert isinstance(broken, ConnectionBroken) and message in str(broken.error)


def test_a_stream_frame_on_a_unary_call_breaks_it_and_a_response_on_a_stream_fails_the_stream() -> None:
    client = Connection(Role.CLIENT)
    unary, _ = client.send_request(MD, b"")
    stream, _ = client.send_request(MD, b"", attachment="s", window=4)
    [(sid, error, attachment)] = client.receive(encode_frame(FrameType.RESPONSE, stream, b"\xc0"))
    assert (sid, attachment) == (stream, "s") and isinstance(error, MalformedFrame)
    [broken] = client.receive(encode_frame(FrameType.STREAM_DATA, unary, b"\xc0"))
    assert "stream frame on unary call" in str(broken.error)


def test_answers_to_unknown_streams_are_dropped_quietly() -> None:
    client = Connection(Role.CLIENT)
    for kind in (FrameType.RESPONSE, FrameType.ERROR, FrameType.STREAM_DATA, FrameType.STREAM_END):
        assert client.receive(encode_frame(kind, 42, b"")) == []
    assert not client.closed


def test_garbage_breaks_the_connection_and_says_so_in_a_goaway() -> None:
    server = Connection(Role.SERVER)
    [broken] = server.receive(b"GET / HTTP/1.1\r\n\r\n")
    assert isinstance(broken.error, BadMagic)
    assert frames_of(server.take_outgoing())[0].type == FrameType.GOAWAY


def test_a_request_with_metadata_over_the_limit_is_refused_and_the_connection_kept() -> None:
    pair = Pair(server_limits=Limits(max_metadata_size=64))
    big = encode_metadata({"service": "greeter", "method": "hello", "x": "y" * 100})
    events = pair.to_server(encode_frame(FrameType.REQUEST, 1, b"", big) + encode_frame(FrameType.REQUEST, 3, b"", MD))
    assert [e.stream_id for e in events] == [3] and not pair.server.closed
    [refusal] = frames_of(pair.server.take_outgoing())
    error = decode_error_frame(refusal)
    assert refusal.stream_id == 1 and error.code is StatusCode.INVALID_ARGUMENT and error.not_processed


def test_an_answer_with_metadata_over_the_limit_fails_that_call_only() -> None:
    client = Connection(Role.CLIENT, Limits(max_metadata_size=16))
    a, _ = client.send_request(MD, b"", attachment="a")
    b, _ = client.send_request(MD, b"", attachment="b")
    big = encode_metadata({"padding": "p" * 40})
    refused = encode_frame(FrameType.ERROR, a, encode_error(StatusCode.UNAVAILABLE, "no"), big, Flags.NOT_PROCESSED)
    [(sid, error, attachment)] = client.receive(refused)
    assert (sid, attachment) == (a, "a") and isinstance(error, RpcError)
    assert error.code is StatusCode.RESOURCE_EXHAUSTED and error.not_processed  # the ERROR said so
    assert list(client.streams) == [b] and not client.closed


def test_keepalive_pings_a_silent_peer_and_gives_up_after_the_timeout() -> None:
    conn = Connection(Role.CLIENT, keepalive=KeepaliveConfig(interval=10, timeout=5), now=0.0)
    assert conn.tick(9.0) is KeepaliveAction.NOTHING
    assert conn.tick(10.0) is KeepaliveAction.SEND_PING
    assert frames_of(conn.take_outgoing())[0].type == FrameType.PING
    assert conn.tick(14.0) is KeepaliveAction.NOTHING
    assert conn.tick(15.0) is KeepaliveAction.PEER_DEAD
    lively = Connection(Role.SERVER, keepalive=KeepaliveConfig(interval=10, timeout=5), now=0.0)
    lively.receive(OPENING_PING)  # a whole frame is a sign of life
    assert lively.tick(10.0) is KeepaliveAction.NOTHING and lively.tick(20.0) is KeepaliveAction.SEND_PING


def test_close_hands_back_every_open_streams_attachment() -> None:
    client = Connection(Role.CLIENT)
    client.send_request(MD, b"", attachment="a")
    client.send_request(MD, b"", attachment="b", window=2)
    assert client.close() == ["a", "b"] and client.streams == {} and client.closed


def test_an_error_body_encoded_ahead_closes_the_stream() -> None:
    pair = Pair()
    sid, data = pair.client.send_request(MD, b"", attachment="c")
    pair.to_server(data)
    refusal = encode_error(StatusCode.RESOURCE_EXHAUSTED, "shed")
    [(_, frame, attachment)] = pair.to_client(pair.server.send_error_body(sid, refusal, not_processed=True))
    assert attachment == "c" and decode_error_frame(frame).not_processed and pair.server.streams == {}
    assert msgspec.msgpack.decode(frame.body)["message"] == "shed"
