"""Frames skipped for oversized metadata: what a connection does with them does not depend on how TCP
split the bytes, and the rejection keeps what the frame said.

- A stream's message that arrived before its rejected frame is delivered, then the error, whether
  both came in one read or in two.
- A REQUEST reusing a running stream's id is a protocol error (GOAWAY, connection closed), in one
  read or two.
- A rejected ERROR frame that carries NOT_PROCESSED fails the call as not processed: the handler
  never ran, so a retry is safe.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from meshkit.errors import RpcError
from meshkit.protocol.frames import Flags, FrameType, encode_frame
from meshkit.protocol.limits import Limits
from meshkit.transport.client import ClientConnection


class _Transport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.written.append(bytes(data))

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1) if name == "peername" else default

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def _stream_items(split: bool) -> list[object]:
    loop = asyncio.get_running_loop()
    conn = ClientConnection(loop, Limits(max_metadata_size=50), None)
    conn.connection_made(_Transport())  # type: ignore[arg-type]
    receiver = conn.open_stream(b"\x80", b"\x80", 0, None, 64)
    sid = receiver.stream_id
    first = encode_frame(FrameType.STREAM_DATA, sid, b"\xa3one")
    oversized = encode_frame(FrameType.STREAM_DATA, sid, b"\xa3two", b"\x80" + b"m" * 99)  # 100 B > 50
    if split:
        conn.data_received(first)
        conn.data_received(oversized)
    else:
        conn.data_received(first + oversized)  # one read, as TCP often delivers it
    items: list[object] = []
    try:
        while (frame := await receiver.next()) is not None:
            items.append(frame.body)
    except RpcError as exc:
        items.append(exc.code.name)
    return items


async def test_two_reads_deliver_the_message_before_the_rejected_frame() -> None:
    # The reference behaviour: the message that came first is delivered, then the error.
    assert await _stream_items(split=True) == [b"\xa3one", "RESOURCE_EXHAUSTED"]


async def test_one_read_delivers_the_message_before_the_rejected_frame() -> None:
    assert await _stream_items(split=False) == [b"\xa3one", "RESOURCE_EXHAUSTED"]


def _server_answers(split: bool) -> list[object]:
    """What a ServerConnection writes for REQUEST 1 (its handler keeps running) followed by a
    REQUEST that reuses stream 1 with oversized metadata."""
    from meshkit.protocol.decoder import FrameDecoder
    from meshkit.transport.server import ServerConnection

    loop = asyncio.new_event_loop()
    try:

        def dispatch(conn: ServerConnection, frame: Any) -> None:
            conn.active[frame.stream_id] = asyncio.Future(loop=loop)  # a handler that is still running

        conn = ServerConnection(loop, Limits(), None, dispatch, lambda c: None, lambda c: None)
        transport = _Transport()
        conn.connection_made(transport)  # type: ignore[arg-type]
        request = encode_frame(FrameType.REQUEST, 1, b"\x80", b"\x80")
        reused = encode_frame(FrameType.REQUEST, 1, b"\x80", b"\x80" + b"m" * 20_000)  # over 16 KiB
        if split:
            conn.data_received(request)
            conn.data_received(reused)
        else:
            conn.data_received(request + reused)
        frames = FrameDecoder().feed(b"".join(transport.written))
        return [(FrameType(f.type).name, f.stream_id, bool(f.flags & Flags.NOT_PROCESSED)) for f in frames] + [
            ("closed", transport.closing)
        ]
    finally:
        loop.close()


def test_a_reused_stream_in_two_reads_is_a_protocol_error() -> None:
    assert _server_answers(split=True) == [("GOAWAY", 0, False), ("closed", True)]


def test_a_reused_stream_in_one_read_is_a_protocol_error_too() -> None:
    assert _server_answers(split=False) == [("GOAWAY", 0, False), ("closed", True)]


async def test_a_rejected_not_processed_error_keeps_not_processed() -> None:
    conn = ClientConnection(asyncio.get_running_loop(), Limits(max_metadata_size=50), None)
    conn.connection_made(_Transport())  # type: ignore[arg-type]
    sid, fut = conn.request(b"\x80", b"\x80", 0, None)
    conn.data_received(
        encode_frame(FrameType.ERROR, sid, b"\x80", b"\x80" + b"m" * 99, Flags.NOT_PROCESSED)  # 100 B > 50
    )
    with pytest.raises(RpcError) as caught:
        await fut
    assert caught.value.not_processed
