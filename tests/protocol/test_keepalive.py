"""Keepalive decisions, driven by a plain-number clock."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshkit.protocol.keepalive import Keepalive, KeepaliveAction, KeepaliveConfig

NOTHING, PING, DEAD = KeepaliveAction.NOTHING, KeepaliveAction.SEND_PING, KeepaliveAction.PEER_DEAD
CONFIG = KeepaliveConfig(interval=10.0, timeout=5.0)


def test_defaults() -> None:
    config = KeepaliveConfig()
    assert (config.interval, config.timeout) == (10.0, 5.0)


@pytest.mark.parametrize(("interval", "timeout"), [(0, 5), (10, 0), (-1, 5), (10, -1), (0, 0)])
def test_config_refuses_non_positive_values(interval: float, timeout: float) -> None:
    with pytest.raises(ValueError):
        KeepaliveConfig(interval=interval, timeout=timeout)


def test_no_ping_while_the_peer_talks() -> None:
    ka = Keepalive(CONFIG, now=0.0)
    for t in range(1, 1000):
        ka.heard(float(t))
        assert ka.tick(t + 9.999) is NOTHING  # never a whole interval of silence
    assert ka.next_check(999.0) == 1009.0


@pytest.mark.parametrize(
    ("ticks", "expected"),
    [
        ([5.0], [NOTHING]),
        ([9.999], [NOTHING]),
        ([10.0], [PING]),  # exactly one interval of silence
        ([25.0], [PING]),  # a late timer still pings first, never declares death without a ping
        ([10.0, 10.0, 14.999], [PING, NOTHING, NOTHING]),  # one ping, not one per tick
        ([10.0, 15.0], [PING, DEAD]),  # exactly the timeout after the ping
        ([10.0, 100.0], [PING, DEAD]),
        ([10.0, 15.0, 16.0, 1000.0], [PING, DEAD, DEAD, DEAD]),  # dead stays dead
    ],
)
def test_silence_table(ticks: list[float], expected: list[KeepaliveAction]) -> None:
    ka = Keepalive(CONFIG, now=0.0)
    assert [ka.tick(t) for t in ticks] == expected


def test_heard_after_a_ping_resets() -> None:
    ka = Keepalive(CONFIG, now=0.0)
    assert ka.tick(10.0) is PING
    ka.heard(12.0)  # the PONG (or any frame) arrives
    assert ka.tick(15.0) is NOTHING  # would have been PEER_DEAD without it
    assert ka.tick(21.999) is NOTHING
    assert ka.next_check(21.999) == 22.0
    assert ka.tick(22.0) is PING  # a new interval counted from what was heard
    assert ka.tick(27.0) is DEAD


def test_heard_even_after_dead_revives() -> None:
    ka = Keepalive(CONFIG, now=0.0)
    assert [ka.tick(10.0), ka.tick(15.0)] == [PING, DEAD]
    ka.heard(15.5)
    assert ka.tick(16.0) is NOTHING


def test_start_time_counts_as_heard() -> None:
    ka = Keepalive(CONFIG, now=100.0)
    assert ka.tick(109.0) is NOTHING
    assert ka.tick(110.0) is PING


@pytest.mark.parametrize(
    ("steps", "now", "expected"),
    [
        ([], 0.0, 10.0),  # fresh: one interval after the start
        ([], 3.0, 10.0),
        ([], 12.0, 12.0),  # already overdue: check now, never in the past
        ([("heard", 4.0)], 5.0, 14.0),
        ([("tick", 10.0)], 10.0, 15.0),  # after a ping: when the timeout runs out
        ([("tick", 11.0)], 12.0, 16.0),
        ([("tick", 10.0), ("heard", 12.0)], 12.0, 22.0),
        ([("tick", 5.0)], 5.0, 10.0),  # a tick that does nothing changes nothing
    ],
)
def test_next_check(steps: list[tuple[str, float]], now: float, expected: float) -> None:
    ka = Keepalive(CONFIG, now=0.0)
    for name, t in steps:
        getattr(ka, name)(t)
    assert ka.next_check(now) == expected


def test_scheduler_driven_by_next_check_finds_a_silent_peer_at_interval_plus_timeout() -> None:
    ka = Keepalive(KeepaliveConfig(interval=30.0, timeout=10.0), now=0.0)
    now, log = 0.0, []
    for _ in range(10):
        now = ka.next_check(now)
        action = ka.tick(now)
        log.append((now, action))
        if action is DEAD:
            break
    assert log == [(30.0, PING), (40.0, DEAD)]


def test_scheduler_with_a_peer_that_answers_pings_never_declares_it_dead() -> None:
    ka = Keepalive(CONFIG, now=0.0)
    now, pings = 0.0, 0
    for _ in range(50):
        now = ka.next_check(now)
        action = ka.tick(now)
        assert action is not DEAD
        if action is PING:
            pings += 1
            ka.heard(now + 0.5)  # the PONG comes back half a second later (exact in binary)
    assert pings == 50


@pytest.mark.parametrize(
    ("config", "heard_at", "tick_first", "expected"),
    [
        (KeepaliveConfig(interval=10.0, timeout=5.0), 10.001, False, PING),
        (KeepaliveConfig(interval=10.0, timeout=0.1), 134.364, True, DEAD),
    ],
    ids=["interval", "timeout"],
)
def test_tick_at_next_check_time_acts(
    config: KeepaliveConfig, heard_at: float, tick_first: bool, expected: KeepaliveAction
) -> None:
    ka = Keepalive(config, now=0.0)
    ka.heard(heard_at)
    now = heard_at
    if tick_first:
        now = ka.next_check(now)
        assert ka.tick(now) is PING
    due = ka.next_check(now)
    assert ka.tick(due) is expected


@given(
    heard_at=st.floats(0, 1e6, allow_nan=False),
    interval=st.floats(0.001, 1e4, allow_nan=False),
    timeout=st.floats(0.001, 1e4, allow_nan=False),
)
def test_ticks_at_next_check_ping_then_declare_dead_with_any_float_times(
    heard_at: float, interval: float, timeout: float
) -> None:
    # A timer that fires exactly when next_check() says never finds nothing to do (no busy loop),
    # whatever the float rounding; a tick just before that time does nothing.
    ka = Keepalive(KeepaliveConfig(interval=interval, timeout=timeout), now=0.0)
    ka.heard(heard_at)
    due = ka.next_check(heard_at)
    assert ka.tick(math.nextafter(due, -math.inf)) is NOTHING
    assert ka.tick(due) is PING
    dead_at = ka.next_check(due)
    assert dead_at >= due
    if dead_at > due:
        assert ka.tick(math.nextafter(dead_at, -math.inf)) is NOTHING
    assert ka.tick(dead_at) is DEAD


events = st.lists(
    st.tuples(st.sampled_from(["heard", "tick"]), st.integers(0, 20).map(float)),
    max_size=40,
)


@given(steps=events, interval=st.integers(1, 20).map(float), timeout=st.integers(1, 20).map(float))
def test_decisions_follow_the_rules(steps: list[tuple[str, float]], interval: float, timeout: float) -> None:
    """With time moving forward (whole seconds, so the arithmetic is exact): a PING only after
    ``interval`` of silence and only one per silence; PEER_DEAD only once a PING has gone ``timeout``
    unanswered; when next_check() says a check is due, tick() acts."""
    ka = Keepalive(KeepaliveConfig(interval=interval, timeout=timeout), now=0.0)
    now, last_heard, ping_at = 0.0, 0.0, None
    for kind, delta in steps:
        now += delta
        if kind == "heard":
            ka.heard(now)
            last_heard, ping_at = now, None
            continue
        due = ka.next_check(now)
        action = ka.tick(now)
        assert (action is not NOTHING) == (due <= now)
        if action is PING:
            assert ping_at is None
            assert now - last_heard >= interval
            ping_at = now
        elif action is DEAD:
            assert ping_at is not None
            assert now - ping_at >= timeout
        else:
            assert (ping_at is None and now - last_heard < interval) or (
                ping_at is not None and now - ping_at < timeout
            )
