from __future__ import annotations

from meshkit.balance.outlier import OutlierDetector


def fail(d: OutlierDetector, key: str, times: int, now: float) -> bool:
    return any([d.record(key, False, now) for _ in range(times)])


def test_five_consecutive_failures_eject_for_thirty_seconds() -> None:
    d = OutlierDetector()
    d.update([f"n{i}" for i in range(10)])
    assert not fail(d, "n0", 4, now=0)
    d.record("n0", True, 0)  # a success resets the run
    assert not fail(d, "n0", 4, now=0)
    assert d.record("n0", False, 0)
    assert d.is_ejected("n0", 29.9) and not d.is_ejected("n0", 30.0)


def test_ejection_time_grows_with_each_ejection_and_is_capped() -> None:
    d = OutlierDetector()
    d.update([f"n{i}" for i in range(10)])
    now = 0.0
    periods = []
    for _ in range(12):
        assert fail(d, "n0", 5, now)
        until = d.health["n0"].ejected_until
        periods.append(until - now)
        now = until
    assert periods[:3] == [30, 60, 90]
    assert max(periods) == 300 and periods[-1] == 300


def test_never_more_than_ten_percent_but_at_least_one() -> None:
    d = OutlierDetector()
    d.update([f"n{i}" for i in range(20)])  # 10 % of 20 = 2
    assert fail(d, "n0", 5, 0) and fail(d, "n1", 5, 0)
    assert not fail(d, "n2", 5, 0)
    small = OutlierDetector()
    small.update(["a", "b", "c"])  # 10 % of 3 rounds down to 0, but one may go
    assert fail(small, "a", 5, 0)
    assert not fail(small, "b", 5, 0)


def test_panic_threshold_keeps_everyone_in_rotation() -> None:
    d = OutlierDetector(max_ejected_percent=100)
    d.update(["a", "b", "c", "d"])
    assert fail(d, "a", 5, 0) and fail(d, "b", 5, 0)
    assert d.is_ejected("a", 1)  # 2 of 4 left: exactly 50 %, still honoured
    assert fail(d, "c", 5, 0)
    assert not d.is_ejected("a", 1) and not d.is_ejected("c", 1)  # 1 of 4 left: panic, use all


def test_membership_changes_keep_known_health() -> None:
    d = OutlierDetector()
    d.update(["a", "b"])
    assert fail(d, "a", 5, 0)
    assert not fail(d, "b", 3, 0)  # a run of failures in progress
    d.update(["a", "b", "c"])
    assert d.is_ejected("a", 1) and d.health["a"].times_ejected == 1  # still out, its count kept
    assert d.health["b"].failures == 3
    assert d.health["c"].failures == 0 and d.health["c"].times_ejected == 0
    assert not d.record("gone", False, 0)  # an unknown key counts nothing
    d.update(["b", "c"])
    assert "a" not in d.health  # a member that left is forgotten
