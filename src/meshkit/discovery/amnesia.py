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

Sans-IO: the caller passes the time and schedules the end of the grace period.
"""

from __future__ import annotations

from collections.abc import Sequence

from meshkit.discovery.instance import Instance


class AmnesiaGuard:
    """The view to apply for each snapshot of a watch that may have reconnected."""

    __slots__ = ("_held", "_until", "grace")

    def __init__(self, grace: float) -> None:
        if grace < 0:
            raise ValueError(f"grace must be >= 0 seconds, got {grace}")
        self.grace = grace
        self._held: dict[str, Instance] = {}
        self._until = 0.0

    def reconnected(self, known: Sequence[Instance], now: float) -> None:
        """A new watch begins after one failed or ended; ``known`` is the view before it."""
        # A second reconnect inside the grace period holds what is known now (which includes
        # anything still held), with a fresh grace period.
        self._held = {i.id: i for i in known}
        self._until = now + self.grace

    @property
    def deadline(self) -> float | None:
        """When the held instances are let go (None: nothing is held)."""
        return self._until if self._held else None

    @property
    def held(self) -> int:
        return len(self._held)

    def let_go(self) -> None:
        """End the grace period now (its timer fired)."""
        self._held.clear()

    def view(self, snapshot: Sequence[Instance], now: float) -> list[Instance]:
        """``snapshot`` plus the instances still held that it does not show."""
        if not self._held:
            return list(snapshot)
        if now >= self._until:
            self._held.clear()
            return list(snapshot)
        for instance in snapshot:
            self._held.pop(instance.id, None)
        return [*snapshot, *self._held.values()]
