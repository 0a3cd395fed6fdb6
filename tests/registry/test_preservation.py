"""Self-preservation holds expired leases only for mass silence, for a bounded time, and stops when
renewals recover. Driven by a number clock: eviction rounds every second, as the service runs them."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

import pytest

from meshkit.discovery import Instance
from meshkit.registry.preservation import PreservationConfig, SelfPreservation
from meshkit.registry.service import RegistryService
from meshkit.registry.state import RegistryState

TTL = 9.0  # instances renew every 3 s
HOLD_FOR = 60.0


def inst(n: int) -> Instance:
    return Instance(service="s", host="127.0.0.1", port=7000 + n, id=f"i{n}")


@dataclass
class Fleet:
    """``n`` instances renewing every TTL/3 while not silenced; eviction rounds once a second."""

    n: int
    hold_for: float = HOLD_FOR
    state: RegistryState = field(init=False)
    leases: dict[int, int] = field(init=False)
    last_renewal: dict[int, float] = field(init=False)
    evicted_at: dict[str, float] = field(default_factory=dict)
    preserving_at: list[float] = field(default_factory=list)
    now: float = 0.0

    def __post_init__(self) -> None:
        self.state = RegistryState(preservation=SelfPreservation(PreservationConfig(hold_for=self.hold_for)))
        self.leases = {i: self.state.register(inst(i), TTL, 0.0) for i in range(self.n)}
        self.last_renewal = dict.fromkeys(range(self.n), 0.0)

    def run_until(self, end: float, silent: set[int] = frozenset()) -> None:  # type: ignore[assignment]
        while self.now < end:
            self.now += 1.0
            for i, lease in self.leases.items():
                due = i not in silent and self.now - self.last_renewal[i] >= TTL / 3
                if due and self.state.renew(lease, self.now):
                    self.last_renewal[i] = self.now
            for instance in self.state.evict(self.now):
                self.evicted_at[instance.id] = self.now
            if self.state.preserving:
                self.preserving_at.append(self.now)

    def listed(self) -> int:
        return len(self.state.snapshot("s"))


@pytest.mark.parametrize("n", [4, 8, 16])
def test_one_killed_instance_is_evicted_within_its_ttl_and_a_round(n: int) -> None:
    fleet = Fleet(n)
    fleet.run_until(30)
    killed_after = fleet.last_renewal[0]
    fleet.run_until(30 + 3 * TTL, silent={0})
    assert list(fleet.evicted_at) == ["i0"]
    assert fleet.evicted_at["i0"] <= killed_after + TTL + 1.0
    assert fleet.preserving_at == [] and fleet.state.preservation.episodes == 0
    assert fleet.listed() == n - 1


@pytest.mark.parametrize("n", [4, 8, 16])
def test_half_silenced_at_once_is_held_then_released_after_the_bound(n: int) -> None:
    fleet = Fleet(n)
    fleet.run_until(30)
    half = set(range(n // 2))
    fleet.run_until(30 + TTL + 5, silent=half)
    assert fleet.evicted_at == {} and fleet.listed() == n  # expired, yet held
    assert fleet.state.preserving and fleet.state.held == n // 2
    began = fleet.preserving_at[0]
    fleet.run_until(began + HOLD_FOR + 5, silent=half)
    assert sorted(fleet.evicted_at) == sorted(f"i{i}" for i in half)
    assert set(fleet.evicted_at.values()) == {began + HOLD_FOR}
    assert not fleet.state.preserving and fleet.listed() == n - n // 2
    assert fleet.state.preservation.episodes == 1


def test_renewals_that_come_back_end_the_episode_and_nothing_is_evicted() -> None:
    fleet = Fleet(8)
    fleet.run_until(30)
    fleet.run_until(50, silent={0, 1, 2, 3, 4})
    assert fleet.state.preserving
    fleet.run_until(60)  # the partition heals: everybody renews the lease it still has
    assert not fleet.state.preserving and fleet.evicted_at == {} and fleet.listed() == 8
    changes = fleet.state.preservation.take_changes()
    assert [(c.started, c.reason) for c in changes] == [(True, ""), (False, "recovered")]


def test_a_few_deaths_among_many_are_deaths() -> None:
    fleet = Fleet(16)
    fleet.run_until(30)
    fleet.run_until(60, silent={0, 1})  # 2 of 16 silent: 87.5 % still renew
    assert sorted(fleet.evicted_at) == ["i0", "i1"] and fleet.preserving_at == []


def test_three_of_sixteen_at_once_is_held() -> None:
    fleet = Fleet(16)
    fleet.run_until(30)
    fleet.run_until(50, silent={0, 1, 2})  # 13 of 16 renew: 81 %, under 85 %
    assert fleet.evicted_at == {} and fleet.state.preserving


def test_small_registries_do_not_preserve() -> None:
    fleet = Fleet(3)
    fleet.run_until(30)
    fleet.run_until(50, silent={0, 1})
    assert sorted(fleet.evicted_at) == ["i0", "i1"] and fleet.preserving_at == []


def test_hold_for_zero_turns_it_off() -> None:
    fleet = Fleet(8, hold_for=0)
    fleet.run_until(30)
    fleet.run_until(50, silent={0, 1, 2, 3, 4, 5})
    assert len(fleet.evicted_at) == 6 and fleet.preserving_at == []


def test_a_later_partition_starts_a_new_episode() -> None:
    fleet = Fleet(8)
    fleet.run_until(30)
    fleet.run_until(120, silent={0, 1, 2, 3})  # held 60 s, then released
    assert len(fleet.evicted_at) == 4 and fleet.state.preservation.episodes == 1
    fleet.run_until(200)
    fleet.run_until(220, silent={4, 5})  # 2 of the 4 left go quiet together
    assert fleet.state.preserving and fleet.state.preservation.episodes == 2


@dataclass
class Quiet:
    renewed_at: float
    ttl: float = TTL


def test_silence_that_outlasts_the_bound_is_not_held_again() -> None:
    """Leases that went quiet a little after the released ones expire later, in the same silence:
    they are evicted at their expiry, not held for another full bound."""
    p = SelfPreservation(PreservationConfig(hold_for=60))
    early, late, fine = [Quiet(30.0)] * 4, [Quiet(93.0)] * 2, [Quiet(99.0)] * 2
    assert p.hold(early + [Quiet(39.0)] * 4, any_expired=True, now=40)  # 4 of 8 quiet
    assert p.hold(early + late + fine, any_expired=True, now=99)
    assert not p.hold(early + late + fine, any_expired=True, now=100)  # the bound: release
    # The early four are evicted; the late two are still quiet and expire at 102.
    assert not p.hold(late + fine, any_expired=False, now=101)
    assert not p.hold(late + fine, any_expired=True, now=102)
    assert p.episodes == 1
    # Once the silence is over, a new one may start an episode again.
    assert not p.hold([Quiet(103.0)] * 4, any_expired=False, now=103)
    assert p.hold([Quiet(103.0)] * 2 + [Quiet(110.0)] * 2, any_expired=True, now=112.5)
    assert p.episodes == 2


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (dict(hold_for=-1), "hold_for must be >= 0"),
        (dict(min_silent=1), "one silent lease is a death"),
        (dict(renewing_threshold=0), "renewing_threshold must be in (0, 1]"),
        (dict(silent_after=1.0), "silent_after must be a share of the TTL"),
    ],
)
def test_bad_config_is_refused_with_what_is_wrong(config: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        PreservationConfig(**config)  # type: ignore[arg-type]


async def test_the_service_logs_once_entering_and_once_leaving(caplog: pytest.LogCaptureFixture) -> None:
    clock = [0.0]
    service = RegistryService(clock=lambda: clock[0])
    leases = [await service.register(inst(i), ttl=TTL) for i in range(8)]
    caplog.set_level(logging.INFO, logger="meshkit.registry")
    for t in range(1, 120):
        clock[0] = float(t)
        if t < 20 or t > 100:
            await service.heartbeat(leases)
        else:
            await service.heartbeat(leases[4:])  # half the fleet goes quiet for 80 s
        service.evict_now()
    lines = [r.getMessage() for r in caplog.records if "self-preservation" in r.getMessage()]
    assert len(lines) == 2, lines
    assert lines[0].startswith("self-preservation on: 4 of 8 leases sent no renewal")
    assert "up to 60 s" in lines[0]
    assert lines[1].startswith("self-preservation off after 60 s: still 4 of 8")
    assert all("%%" not in line for line in lines)
    stats = await service.stats()
    assert stats["self_preservation"] is False and stats["self_preservation_episodes"] == 1
    assert stats["evictions"] == 4 and stats["leases"] == 4
