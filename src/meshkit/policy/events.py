"""Breaker state changes as events: logs see them here, metrics subscribe (observability)."""

from __future__ import annotations

import logging
from collections.abc import Callable

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
