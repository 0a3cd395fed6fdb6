"""Self-preservation: when to keep expired leases instead of evicting them. Pure: time is a number.

Eureka's idea, made narrow and bounded. Eviction assumes an expired lease means a dead instance.
When many instances go quiet *at once*, a network partition between them and the registry is the
likelier cause, and evicting them all would send every client to "no instance" while the
instances are in fact serving. A stale entry costs a failed attempt that retries and outlier
ejection absorb; an emptied registry fails every call.

The decision is taken at each eviction round from the leases themselves, not from a renewal rate
over a window: the earlier rate-based check counted leases that had died as owing renewals, so one
death among four kept it on for ever. Here a lease is *silent* when it has sent no renewal for more
than ``silent_after`` of its TTL (a healthy instance renews every TTL/3, so it is never silent).
Expired leases are held only when

- at least ``min_leases`` leases are held and at least ``min_silent`` of them are silent: one
  death is a death, never a partition;
- the renewing share is below ``renewing_threshold`` (85 %): a few deaths among many are deaths;
- the episode is younger than ``hold_for`` seconds (0 turns the feature off). After that the
  registry believes the silence and evicts; a partition longer than that is an outage to see.

The episode ends when the silent share drops again (the instances' renewals got through, or the
held ones were released), and each start and end is reported once as a :class:`Change`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, Protocol

RENEWING_THRESHOLD = 0.85
DEFAULT_HOLD_FOR = 60.0
SILENT_AFTER = 2 / 3


class Renewable(Protocol):
    @property
    def ttl(self) -> float: ...
    @property
    def renewed_at(self) -> float: ...


@dataclass(frozen=True)
class Change:
    """One start or end of an episode, for the log line."""

    started: bool
    at: float
    silent: int
    leases: int
    #: Why it ended: "recovered" (renewals came back) or "timed out" (held for ``hold_for``).
    reason: Literal["", "recovered", "timed out"] = ""
    #: How long the episode had lasted when it ended.
    lasted: float = 0.0


@dataclass(frozen=True)
class PreservationConfig:
    renewing_threshold: float = RENEWING_THRESHOLD
    hold_for: float = DEFAULT_HOLD_FOR
    min_leases: int = 4
    min_silent: int = 2
    silent_after: float = SILENT_AFTER

    def __post_init__(self) -> None:
        if not 0 < self.renewing_threshold <= 1:
            raise ValueError(f"renewing_threshold must be in (0, 1], got {self.renewing_threshold}")
        if self.hold_for < 0:
            raise ValueError(f"hold_for must be >= 0 seconds (0 turns self-preservation off), got {self.hold_for}")
        if self.min_silent < 2:
            raise ValueError(f"min_silent must be >= 2 (one silent lease is a death), got {self.min_silent}")
        if not 0 < self.silent_after < 1:
            raise ValueError(f"silent_after must be a share of the TTL in (0, 1), got {self.silent_after}")


class SelfPreservation:
    """Decides, round by round, whether expired leases are held; remembers the current episode."""

    def __init__(self, config: PreservationConfig | None = None) -> None:
        self.config = config or PreservationConfig()
        #: When the current episode began (None: not preserving).
        self.since: float | None = None
        #: Episodes begun since start, a counter for stats and metrics.
        self.episodes = 0
        #: Whether the last episode ran out of time while the silence it began for goes on: no new
        #: episode starts until the silence ends, or a partition longer than ``hold_for`` would
        #: be held again at once after its release.
        self._spent = False
        self.changes: list[Change] = []

    @property
    def active(self) -> bool:
        return self.since is not None

    def silent(self, leases: Iterable[Renewable], now: float) -> tuple[int, int]:
        """(silent, total) among ``leases``."""
        silent = total = 0
        share = self.config.silent_after
        for lease in leases:
            total += 1
            if now - lease.renewed_at > share * lease.ttl:
                silent += 1
        return silent, total

    def mass_silence(self, silent: int, total: int) -> bool:
        c = self.config
        return total >= c.min_leases and silent >= c.min_silent and (total - silent) < c.renewing_threshold * total

    def hold(self, leases: Iterable[Renewable], any_expired: bool, now: float) -> bool:
        """Whether to keep this round's expired leases. Call once per eviction round."""
        if self.config.hold_for == 0:
            return False
        silent, total = self.silent(leases, now)
        mass = self.mass_silence(silent, total)
        if self.since is not None:
            lasted = now - self.since
            if not mass:
                self._end(now, silent, total, "recovered", lasted)
                return False
            if lasted >= self.config.hold_for:
                self._end(now, silent, total, "timed out", lasted)
                self._spent = True
                return False
            return True
        if not mass:
            self._spent = False
            return False
        if not any_expired or self._spent:
            return False
        self.since = now
        self.episodes += 1
        self.changes.append(Change(True, now, silent, total))
        return True

    def _end(
        self, now: float, silent: int, total: int, reason: Literal["recovered", "timed out"], lasted: float
    ) -> None:
        self.since = None
        self.changes.append(Change(False, now, silent, total, reason, lasted))

    def take_changes(self) -> list[Change]:
        changes, self.changes = self.changes, []
        return changes
