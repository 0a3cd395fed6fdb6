"""Hypothesis stateful test of the client connection: requests, answers, errors, answers for
calls it never made, GOAWAY, pings and the connection's loss, in any order. Invariants: every
call ends exactly once, with the answer to *its* stream; a call the server never saw (above a
GOAWAY's last stream id, or after it) fails as not processed; a lost connection fails everything
still pending; nothing reaches the "bug while handling a frame" path."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from meshkit.errors import RpcError, StatusCode
from meshkit.protocol.frames import FrameType, encode_frame
from meshkit.protocol.limits import Limits
from meshkit.protocol.messages import encode_error, encode_goaway
from meshkit.protocol.metadata import encode_metadata
from meshkit.transport.client import ClientConnection
from tests.faults.conftest import Reliability

MD = encode_metadata({"service": "s", "method": "m"})


class _Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.closed = False
        self.written: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written.append(bytes(data))

    def writelines(self, data: Any) -> None:
        for chunk in data:
            self.write(chunk)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1) if name == "peername" else default


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class ConnectionMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.conn = ClientConnection(self.loop, Limits(), None)
        self.transport = _Transport()
        self.conn.connection_made(self.transport)
        self.calls: dict[int, asyncio.Future[Any]] = {}  # every call made, by stream id
        self.answered: dict[int, bytes] = {}  # the body each call was answered with
        self.unseen: set[int] = set()  # calls the server said it never saw
        self.goaway_at: int | None = None
        self.lost = False
        self.errors = _Errors()
        logging.getLogger("meshkit").addHandler(self.errors)

    def teardown(self) -> None:
        logging.getLogger("meshkit").removeHandler(self.errors)
        for fut in self.calls.values():
            if fut.done() and not fut.cancelled():
                fut.exception()  # retrieved: no "never retrieved" noise
        self.loop.close()

    def _open(self) -> list[int]:
        return [sid for sid, fut in self.calls.items() if not fut.done()]

    @rule()
    def request(self) -> None:
        try:
            sid, fut = self.conn.request(MD, b"\x80", 0, None)
        except RpcError as exc:
            assert self.lost or self.goaway_at is not None  # refused only once it cannot take calls
            assert exc.code is StatusCode.UNAVAILABLE and exc.not_processed
            return
        assert not self.lost
        assert sid not in self.calls or self.calls[sid].done()  # ids are not reused while in flight
        self.calls[sid] = fut

    @precondition(lambda self: not self.lost)
    @rule(data=st.data())
    def answer(self, data: st.DataObject) -> None:
        open_calls = self._open()
        if not open_calls:
            return
        sid = data.draw(st.sampled_from(open_calls))
        body = f"answer-{sid}".encode()
        self.conn.data_received(encode_frame(FrameType.RESPONSE, sid, b"\xa0" + body))
        self.answered[sid] = b"\xa0" + body

    @precondition(lambda self: not self.lost)
    @rule(data=st.data(), not_processed=st.booleans())
    def fail(self, data: st.DataObject, not_processed: bool) -> None:
        open_calls = self._open()
        if not open_calls:
            return
        sid = data.draw(st.sampled_from(open_calls))
        flags = 0x08 if not_processed else 0
        self.conn.data_received(
            encode_frame(FrameType.ERROR, sid, encode_error(StatusCode.INTERNAL, "no"), flags=flags)
        )

    @precondition(lambda self: not self.lost)
    @rule(sid=st.integers(min_value=1, max_value=2**32 - 2))
    def answer_for_a_call_never_made_or_finished(self, sid: int) -> None:
        if sid in self.calls and not self.calls[sid].done():
            return
        self.conn.data_received(encode_frame(FrameType.RESPONSE, sid, b"\xa1x"))  # ignored

    @precondition(lambda self: not self.lost)
    @rule()
    def ping(self) -> None:
        self.conn.data_received(encode_frame(FrameType.PING, 0, b"12345678"))

    @precondition(lambda self: not self.lost and self.goaway_at is None)
    @rule(data=st.data())
    def goaway(self, data: st.DataObject) -> None:
        ids = sorted(self.calls)
        last = data.draw(st.sampled_from([0, *ids])) if ids else 0
        self.unseen = {sid for sid in self._open() if sid > last}
        self.goaway_at = last
        self.conn.data_received(encode_frame(FrameType.GOAWAY, 0, encode_goaway(last)))

    @precondition(lambda self: not self.lost)
    @rule()
    def lose_the_connection(self) -> None:
        still_open = self._open()
        self.conn.connection_lost(ConnectionResetError("reset by peer"))
        self.lost = True
        for sid in still_open:
            exc = self.calls[sid].exception()
            assert isinstance(exc, RpcError) and exc.code is StatusCode.UNAVAILABLE
            assert not exc.not_processed  # it may have run: never a safe re-send

    @invariant()
    def answers_reach_their_own_call(self) -> None:
        for sid, body in self.answered.items():
            fut = self.calls[sid]
            assert fut.done() and fut.result().body == body

    @invariant()
    def calls_the_server_never_saw_fail_as_not_processed(self) -> None:
        for sid in self.unseen:
            if sid in self.answered:
                continue
            exc = self.calls[sid].exception()
            assert isinstance(exc, RpcError) and exc.not_processed

    @invariant()
    def pending_holds_only_unfinished_calls(self) -> None:
        for sid, entry in self.conn.pending.items():
            assert not entry.done(), sid  # type: ignore[union-attr]

    @invariant()
    def no_bug_path(self) -> None:
        assert self.errors.records == [], [r.getMessage() for r in self.errors.records]


EXAMPLES, STEPS = 150, 40


def test_the_connection_state_machine_holds_its_invariants(reliability: Reliability) -> None:
    run_state_machine_as_test(
        ConnectionMachine, settings=settings(max_examples=EXAMPLES, stateful_step_count=STEPS, deadline=None)
    )
    reliability.record(
        "connection state machine (hypothesis, stateful)",
        f"{EXAMPLES} random programs of up to {STEPS} steps: requests, answers, errors, stray answers, "
        "pings, GOAWAY, loss, in any order",
        "each call ends once, with its own answer; unseen calls fail as not processed; loss fails "
        "the rest as maybe-run; no bug path",
        "invariants held in every program",
    )
