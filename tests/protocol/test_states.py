"""The stream state table: every allowed transition, the forbidden ones, and properties of the graph."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshkit.errors import MalformedFrame
from meshkit.protocol.states import TRANSITIONS, StreamEvent, StreamState, advance

S, E = StreamState, StreamEvent

#: The specification, written out independently of states.py: a change to the table must change this.
EXPECTED = {
    (S.IDLE, E.REQUEST): S.OPEN,
    (S.OPEN, E.RESPONSE): S.CLOSED,
    (S.OPEN, E.ERROR): S.CLOSED,
    (S.OPEN, E.STREAM_DATA): S.STREAMING,
    (S.OPEN, E.STREAM_END): S.CLOSED,
    (S.OPEN, E.CANCEL): S.CLOSED,
    (S.OPEN, E.CREDIT): S.OPEN,
    (S.STREAMING, E.STREAM_DATA): S.STREAMING,
    (S.STREAMING, E.STREAM_END): S.CLOSED,
    (S.STREAMING, E.ERROR): S.CLOSED,
    (S.STREAMING, E.CANCEL): S.CLOSED,
    (S.STREAMING, E.CREDIT): S.STREAMING,
}
ALL_PAIRS = list(itertools.product(StreamState, StreamEvent))
FORBIDDEN = [pair for pair in ALL_PAIRS if pair not in EXPECTED]


def test_table_is_the_specified_one() -> None:
    assert TRANSITIONS == EXPECTED


@pytest.mark.parametrize(("pair", "after"), list(EXPECTED.items()), ids=lambda x: getattr(x, "value", None))
def test_every_allowed_transition(pair: tuple[StreamState, StreamEvent], after: StreamState) -> None:
    state, event = pair
    assert advance(state, event) is after


@pytest.mark.parametrize(
    ("state", "event"),
    [
        (S.IDLE, E.RESPONSE),  # an answer to a call never made
        (S.IDLE, E.STREAM_DATA),
        (S.IDLE, E.CANCEL),  # cancelling a call never made
        (S.IDLE, E.CREDIT),
        (S.OPEN, E.REQUEST),  # reusing an open stream id
        (S.STREAMING, E.REQUEST),
        (S.STREAMING, E.RESPONSE),  # a unary answer after stream messages
        (S.CLOSED, E.REQUEST),  # a closed stream is never reopened
        (S.CLOSED, E.STREAM_DATA),
        (S.CLOSED, E.RESPONSE),
        (S.CLOSED, E.CREDIT),
    ],
    ids=lambda x: x.value,
)
def test_sample_of_forbidden_transitions(state: StreamState, event: StreamEvent) -> None:
    with pytest.raises(MalformedFrame, match=f"{event.value}.*{state.value}"):
        advance(state, event)


@pytest.mark.parametrize(("state", "event"), FORBIDDEN, ids=[f"{s.value}-{e.value}" for s, e in FORBIDDEN])
def test_every_pair_outside_the_table_is_forbidden(state: StreamState, event: StreamEvent) -> None:
    with pytest.raises(MalformedFrame):
        advance(state, event)


def test_closed_is_terminal() -> None:
    assert not [pair for pair in TRANSITIONS if pair[0] is S.CLOSED]


def test_only_a_request_opens_a_stream() -> None:
    assert [pair for pair in TRANSITIONS if pair[0] is S.IDLE] == [(S.IDLE, E.REQUEST)]
    assert all(after is not S.IDLE for after in TRANSITIONS.values())


def test_every_state_is_reachable_and_every_live_state_can_close() -> None:
    def reachable(start: StreamState) -> set[StreamState]:
        seen, todo = {start}, [start]
        while todo:
            state = todo.pop()
            for (src, _), dst in TRANSITIONS.items():
                if src is state and dst not in seen:
                    seen.add(dst)
                    todo.append(dst)
        return seen

    assert reachable(S.IDLE) == set(StreamState)
    for state in StreamState:
        assert S.CLOSED in reachable(state), f"{state} can never close"


@pytest.mark.parametrize(
    ("events", "final"),
    [
        ([E.REQUEST, E.RESPONSE], S.CLOSED),  # unary call
        ([E.REQUEST, E.ERROR], S.CLOSED),  # failed call
        ([E.REQUEST, E.CANCEL], S.CLOSED),  # caller gave up
        ([E.REQUEST, E.STREAM_END], S.CLOSED),  # empty server stream
        ([E.REQUEST, E.CREDIT, E.STREAM_DATA, E.STREAM_DATA, E.CREDIT, E.STREAM_DATA, E.STREAM_END], S.CLOSED),
        ([E.REQUEST, E.STREAM_DATA, E.ERROR], S.CLOSED),  # stream failed midway
        ([E.REQUEST, E.STREAM_DATA, E.CANCEL], S.CLOSED),
        ([E.REQUEST, E.STREAM_DATA], S.STREAMING),
        ([E.REQUEST], S.OPEN),
    ],
    ids=lambda x: x.value if isinstance(x, S) else "-".join(e.value for e in x),
)
def test_lifecycles(events: list[StreamEvent], final: StreamState) -> None:
    state = S.IDLE
    for event in events:
        state = advance(state, event)
    assert state is final


@given(events=st.lists(st.sampled_from(list(StreamEvent)), max_size=30))
def test_any_event_sequence_ends_in_a_valid_state_or_raises(events: list[StreamEvent]) -> None:
    state = S.IDLE
    for i, event in enumerate(events):
        allowed = (state, event) in TRANSITIONS
        try:
            nxt = advance(state, event)
        except MalformedFrame:
            assert not allowed
            # Whatever came before was a legal life of a stream; nothing after the violation matters.
            assert i == 0 or events[0] is E.REQUEST
            return
        assert allowed
        assert isinstance(nxt, StreamState)
        assert nxt is not S.IDLE
        if nxt is S.CLOSED:
            assert event in {E.RESPONSE, E.ERROR, E.STREAM_END, E.CANCEL}
        state = nxt
    assert state in set(StreamState)
    if events:
        assert events[0] is E.REQUEST
        assert E.REQUEST not in events[1:]
