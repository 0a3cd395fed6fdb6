"""A client and a server Connection driven by hypothesis through any legal interleaving of calls,
streams, credit, cancels, pings and a GOAWAY, with the bytes between them cut at random points.

Whatever the order, neither side ever sees a protocol violation, both agree on which streams are
open once the bytes are delivered, every call ends exactly once on the caller's side, and a call
the client is told the server never saw (GOAWAY) was indeed never dispatched.
"""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from meshkit.errors import StatusCode
from meshkit.protocol.connection import (
    Cancelled,
    Connection,
    ConnectionBroken,
    CreditGranted,
    GoAwayReceived,
    PongReceived,
    Role,
)
from meshkit.protocol.frames import Flags, Frame, FrameType
from meshkit.protocol.metadata import encode_metadata
from meshkit.protocol.states import StreamState

MD = encode_metadata({"service": "s", "method": "m"})


class ConnectionPairMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.client = Connection(Role.CLIENT)
        self.server = Connection(Role.SERVER)
        self.to_server = bytearray()
        self.to_client = bytearray()
        self.windows: dict[int, int] = {}  # stream calls: the window they asked for
        self.client_open: set[int] = set()
        self.ended: set[int] = set()  # calls that ended on the caller's side (answer, cancel, GOAWAY)
        self.dispatched: set[int] = set()  # REQUESTs the server handed on
        self.server_open: set[int] = set()

    # -- the client --------------------------------------------------------------------------
    @precondition(lambda self: not self.client.draining)
    @rule(window=st.sampled_from([0, 0, 1, 3]), compressed=st.booleans())
    def call(self, window: int, compressed: bool) -> None:
        body = b"\x91\xa1x" * (400 if compressed else 1)
        sid, data = self.client.send_request(MD, body, attachment=("call", None), window=window, compressed=compressed)
        self.client.attach(sid, ("call", sid))
        self.to_server += data
        self.client_open.add(sid)
        if window:
            self.windows[sid] = window

    @precondition(lambda self: self.client_open)
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        sid = data.draw(st.sampled_from(sorted(self.client_open)))
        self.to_server += self.client.send_cancel(sid)
        self.client_open.discard(sid)
        self.ended.add(sid)
        assert self.client.state(sid) is StreamState.IDLE

    @rule()
    def ping(self) -> None:
        self.to_server += self.client.send_ping(b"12345678")

    # -- the server --------------------------------------------------------------------------
    def _open_on_server(self, streaming: bool) -> list[int]:
        return sorted(s for s in self.server_open if (s in self.windows) == streaming)

    @precondition(lambda self: self._open_on_server(False))
    @rule(data=st.data(), fail=st.booleans(), compressed=st.booleans())
    def answer(self, data: st.DataObject, fail: bool, compressed: bool) -> None:
        sid = data.draw(st.sampled_from(self._open_on_server(False)))
        if fail:
            self.to_client += self.server.send_error(sid, StatusCode.NOT_FOUND, "no")
        else:
            self.to_client += self.server.send_response(
                sid, b"\xa2ok" * (600 if compressed else 1), compressed=compressed
            )
        self.server_open.discard(sid)
        assert self.server.state(sid) is StreamState.IDLE

    @precondition(lambda self: any(self.server.credit(s) > 0 for s in self._open_on_server(True)))
    @rule(data=st.data())
    def stream_message(self, data: st.DataObject) -> None:
        sid = data.draw(st.sampled_from([s for s in self._open_on_server(True) if self.server.credit(s) > 0]))
        self.to_client += self.server.send_stream_data(sid, b"\x01")
        assert self.server.state(sid) is StreamState.STREAMING

    @precondition(lambda self: self._open_on_server(True))
    @rule(data=st.data(), fail=st.booleans())
    def stream_end(self, data: st.DataObject, fail: bool) -> None:
        sid = data.draw(st.sampled_from(self._open_on_server(True)))
        if fail:
            self.to_client += self.server.send_error(sid, StatusCode.INTERNAL, "broke")
        else:
            self.to_client += self.server.send_stream_end(sid)
        self.server_open.discard(sid)

    @precondition(lambda self: not self.server.draining)
    @rule()
    def goaway(self) -> None:
        self.to_client += self.server.send_goaway()

    # -- the bytes in between ------------------------------------------------------------------
    @precondition(lambda self: self.to_server)
    @rule(size=st.integers(1, 200))
    def deliver_to_server(self, size: int) -> None:
        chunk = bytes(self.to_server[:size])
        del self.to_server[:size]
        for event in self.server.receive(chunk):
            assert not isinstance(event, ConnectionBroken), event
            if isinstance(event, Frame):
                assert event.type == FrameType.REQUEST and event.body.startswith(b"\x91\xa1x")
                sid = event.stream_id
                assert sid not in self.dispatched
                self.dispatched.add(sid)
                self.server_open.add(sid)
                if sid in self.windows:
                    assert event.flags & Flags.STREAM
                    self.server.open_credit(sid, self.windows[sid])
            elif isinstance(event, Cancelled):
                self.server_open.discard(event.stream_id)
            else:
                assert isinstance(event, (CreditGranted, PongReceived)), event
        self.to_client += self.server.take_outgoing()

    @precondition(lambda self: self.to_client)
    @rule(size=st.integers(1, 200))
    def deliver_to_client(self, size: int) -> None:
        chunk = bytes(self.to_client[:size])
        del self.to_client[:size]
        for event in self.client.receive(chunk):
            assert not isinstance(event, ConnectionBroken), event
            if isinstance(event, tuple):
                sid, item, attachment = event
                assert attachment == ("call", sid) and sid in self.client_open
                assert isinstance(item, Frame), item
                if item.type == FrameType.STREAM_DATA:
                    self.to_server += self.client.send_credit(sid, 1)  # consumed: grant it again
                    continue
                if item.type == FrameType.RESPONSE:
                    assert item.body.startswith(b"\xa2ok") and not item.flags & Flags.COMPRESSED
                self.client_open.discard(sid)
                self.ended.add(sid)
            elif isinstance(event, GoAwayReceived):
                for kind, sid in event.unprocessed:
                    assert kind == "call" and sid > event.last_stream_id and sid not in self.dispatched
                    self.client_open.discard(sid)
                    self.ended.add(sid)
            else:
                assert isinstance(event, PongReceived), event

    # -- what must always hold -----------------------------------------------------------------
    @invariant()
    def the_client_knows_exactly_the_calls_it_has_not_seen_end(self) -> None:
        assert set(self.client.streams) == self.client_open
        assert not self.client_open & self.ended

    @invariant()
    def the_server_knows_exactly_the_calls_it_has_not_answered(self) -> None:
        assert set(self.server.streams) == self.server_open
        assert not self.client.closed and not self.server.closed

    @invariant()
    def once_quiet_both_sides_agree(self) -> None:
        if not self.to_server and not self.to_client:
            assert self.server_open <= self.client_open  # what the server still runs, the caller awaits


ConnectionPairMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=60, deadline=None)
TestConnectionPair = ConnectionPairMachine.TestCase


def test_the_machine_reaches_every_kind_of_frame() -> None:
    """A fixed run through the machine's rules, so a broken rule fails loudly, not by shrinking."""
    machine = ConnectionPairMachine()
    machine.call(window=0, compressed=True)
    machine.call(window=3, compressed=False)
    machine.ping()
    machine.deliver_to_server(10_000)
    assert machine.server_open == {1, 2}
    machine.to_client += machine.server.send_stream_data(2, b"\x01")
    machine.to_client += machine.server.send_response(1, b"\xa2ok" * 600, compressed=True)
    machine.server_open.discard(1)
    machine.deliver_to_client(10_000)
    assert machine.client_open == {2} and machine.ended == {1}
    machine.goaway()
    machine.call(window=0, compressed=False)
    machine.deliver_to_client(10_000)
    assert 3 in machine.ended and machine.client.draining
    machine.deliver_to_server(10_000)
    assert 3 not in machine.dispatched
    machine.the_client_knows_exactly_the_calls_it_has_not_seen_end()
    machine.the_server_knows_exactly_the_calls_it_has_not_answered()
