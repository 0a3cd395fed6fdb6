"""Clients announce themselves here as they open and close; observers (Prometheus metrics, in
``observe``) subscribe to learn which pools to report, instead of reading a module global.

rpc cannot import observe (observe sits above it), so this is the seam: rpc emits typed events,
observe subscribes. The roster holds clients weakly; a closed client is announced once and
then forgotten, so it is neither kept alive nor reported any more. :class:`Roster` is generic
and lives here, the lowest layer that announces things, so governance (``policy``, above rpc)
announces its policies with the same kind of roster.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    from meshkit.rpc.client import Client

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
class ClientOpened:
    """A client was made (it connects lazily; its pools are what a scrape reads)."""

    client: Client


@dataclass(frozen=True, slots=True)
class ClientClosed:
    """A client's ``close()`` began: its pools are going away and should not be reported."""

    client: Client


ClientEvent = ClientOpened | ClientClosed

#: The clients of this process that are open.
CLIENTS: Roster[Client, ClientEvent] = Roster(ClientOpened, ClientClosed)
