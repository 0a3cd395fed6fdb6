"""Events of the governance layer: breaker state changes, and the roster that announces the
things of one kind a process has (its policies here, its clients in ``rpc.events``).

Observability subscribes rather than reaching into module globals (CONVENTIONS #11): logs see
breaker changes here, and metrics learn of policies and clients as they come and go, so what a
scrape reports is what its collector was told, and nothing else keeps those objects alive.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

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


T = TypeVar("T")
E = TypeVar("E")


class Roster(Generic[T, E]):
    """The things of one kind in use in this process, announced to subscribers as typed events
    when they join (``joined(thing)``) and leave (``left(thing)``, when the kind has an end
    other than garbage collection).

    A subscriber is first told of every member already there, as if it had subscribed before
    them: ``meshkit run`` makes its services (and their clients) and its policy before the
    metrics, and a scrape must still see them. Members are held weakly, so a thing dropped
    without leaving is forgotten when it is collected; subscribers are held until they
    unsubscribe. Sans-IO: events are delivered synchronously, on the caller's thread, at join
    and leave time only (never per call).
    """

    __slots__ = ("_joined", "_left", "_listeners", "_members")

    def __init__(self, joined: Callable[[T], E], left: Callable[[T], E] | None = None) -> None:
        self._joined = joined
        self._left = left
        self._members: dict[int, weakref.ref[T]] = {}
        self._listeners: list[Callable[[E], None]] = []

    def join(self, thing: T) -> None:
        key = id(thing)
        members = self._members

        def forget(ref: weakref.ref[T]) -> None:
            if members.get(key) is ref:
                del members[key]

        members[key] = weakref.ref(thing, forget)
        self._emit(self._joined(thing))

    def leave(self, thing: T) -> None:
        """``thing`` is done (a client closed); announced once however often it is called."""
        ref = self._members.get(id(thing))
        if ref is None or ref() is not thing:
            return
        del self._members[id(thing)]
        if self._left is not None:
            self._emit(self._left(thing))

    def members(self) -> list[T]:
        """The members now: a copy, safe to take from another thread (one C-level dict copy)."""
        return [thing for ref in list(self._members.values()) if (thing := ref()) is not None]

    def subscribe(self, listener: Callable[[E], None]) -> Callable[[], None]:
        """Tell ``listener`` of every member now, then of every join and leave; returns the
        function that unsubscribes it."""
        for thing in self.members():
            listener(self._joined(thing))
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def _emit(self, event: E) -> None:
        for listener in list(self._listeners):
            listener(event)


@dataclass(frozen=True, slots=True)
class PolicyMade:
    """A policy came into use. A policy has no close: it is in use until it is collected, so
    a subscriber holds it weakly (and its counters strongly, to keep their totals)."""

    policy: Policy


#: Every Policy of this process, so one status call shows all their breakers and metrics see them.
POLICIES: Roster[Policy, PolicyMade] = Roster(PolicyMade)
