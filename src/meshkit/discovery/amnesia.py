"""Registry amnesia: do not believe a registry that has just forgotten everything.

A registry that keeps its state in memory (meshkit's built-in one) comes back from a crash empty.
Its instances register again within one heartbeat, but a client whose watch reconnects first is
told "there are none" (or "there is one") and would drop healthy instances it was calling a
moment ago. Eureka calls its answer to this self-preservation; here it is narrower and bounded:

- after a watch *reconnects* (it failed or ended, and a new one began), the instances the client
  knew before are *held* for ``grace`` seconds (one lease TTL: the time a live instance needs to
  register again);
- an instance the new registry shows (in any state) stops being held at once: from then on the
  registry's word about it is final, so a deregistration or an unhealthy mark during the grace
  period still applies immediately;
- when the grace period ends, whatever the registry shows is the view, held instances or not.

A held instance that really died meanwhile costs little: its calls are refused before they are
sent (connection refused is "not processed") and go to another instance.

Only registries that can forget (``forgets_on_restart``) get a grace period: etcd and ZooKeeper
keep their state through restarts (CP), so their answer after a reconnect is the truth.

Sans-IO: the caller passes the time and schedules the end of the grace period.
"""

from __future__ import annotations

from collections.abc import Sequence

from meshkit.discovery.instance import Instance


class AmnesiaGuard:
    """The view to apply for each snapshot of a watch that may have reconnected."""

    __slots__ = ("_held", "grace")

    def __init__(self, grace: float) -> None:
        if grace < 0:
            raise ValueError(f"grace must be >= 0 seconds, got {grace}")
        self.grace = grace
        self._held: dict[str, tuple[Instance, float]] = {}  # id -> (instance, held until)

    def reconnected(self, known: Sequence[Instance], now: float) -> None:
        """A new watch begins after one failed or ended; ``known`` is the view before it.

        An instance already held keeps its deadline: a watch that reconnects again and again
        (a flapping stream, a proxy's stream timeout) must not hold one for ever."""
        held = self._held
        self._held = {i.id: held.get(i.id) or (i, now + self.grace) for i in known}

    @property
    def deadline(self) -> float | None:
        """When the next held instance is let go (None: nothing is held)."""
        return min(until for _, until in self._held.values()) if self._held else None

    @property
    def held(self) -> int:
        return len(self._held)

    def let_go(self, due: float) -> None:
        """Let go of every instance held until ``due`` or before (its timer fired)."""
        self._held = {key: entry for key, entry in self._held.items() if entry[1] > due}

    def view(self, snapshot: Sequence[Instance], now: float) -> list[Instance]:
        """``snapshot`` plus the instances still held that it does not show."""
        if not self._held:
            return list(snapshot)
        self.let_go(now)
        for instance in snapshot:
            self._held.pop(instance.id, None)
        return [*snapshot, *(instance for instance, _ in self._held.values())]
