"""Review of "Oversized metadata costs one call": ClientConnection.frame_rejected fails the call
with RESOURCE_EXHAUSTED, not_processed=False ("the server did run it") whatever the rejected
frame was. An ERROR frame carrying NOT_PROCESSED says the opposite (the handler never ran, a
retry is always safe); Rejected.flags has that bit, and it is dropped."""

from __future__ import annotations

import asyncio

import pytest

from meshkit.errors import RpcError
from meshkit.protocol.frames import Flags, FrameType, encode_frame
from meshkit.protocol.limits import Limits
from meshkit.transport.client import ClientConnection
from tests.review.test_limits_review_order import _Transport


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
