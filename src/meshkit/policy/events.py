"""Events of the governance layer: breaker state changes, and the roster of this process's
policies (a :class:`~meshkit.rpc.events.Roster`, the generic kind rpc announces its clients with).

Observability subscribes rather than reaching into module globals (CONVENTIONS #11): logs see
breaker changes here, and metrics learn of policies and clients as they come and go, so what a
scrape reports is what its collector was told, and nothing else keeps those objects alive.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

# Re-exported: ``Roster`` lives in rpc (below policy), which announces its clients with it.
from meshkit.rpc.events import Roster as Roster

if TYPE_CHECKING:
    from meshkit.policy.runtime import Policy

log = logging.getLogger("meshkit.policy")

#: (name, old state, new state); name is "service.method" or "service@instance".
BreakerListener = Callable[[str, str, str], None]


class BreakerEvents:
    def __init__(self) -> None:
        self.states: dict[str, str] = {}
        self._listeners: list[BreakerListener] = []

    def subscribe(self, listener: BreakerListener) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def emit(self, name: str, old: str, new: str) -> None:
        self.states[name] = new
        if new == "open":
            log.warning("circuit breaker %s: %s -> open (calls fail fast)", name, old)
        else:
            log.info("circuit breaker %s: %s -> %s", name, old, new)
        for listener in list(self._listeners):
            listener(name, old, new)


@dataclass(frozen=True, slots=True)
class PolicyMade:
    """A policy came into use. A policy has no close: it is in use until it is collected, so
    a subscriber holds it weakly (and its counters strongly, to keep their totals)."""

    policy: Policy


#: Every Policy of this process, so one status call shows all their breakers and metrics see them.
POLICIES: Roster[Policy, PolicyMade] = Roster(PolicyMade)
