"""Runtime switches: turn a method into its fallback (degrade it) while the process runs.

A switch is a method name (``"inventory.reserve"``) that is on or off. Servers answer a
switched-on method with its ``@rpc(fallback=…)`` (or refuse it fast with UNAVAILABLE when it has
none); clients answer calls to it with their ``with_fallback(…)`` (or refuse them locally). Set
them from the policy file (``[switches]``), in code, or live with ``meshkit switch``.

One :class:`Switches` per process by default (:func:`process_switches`), so a switch reaches
every server and client of the process; tests pass their own.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from meshkit.errors import RpcError, StatusCode
from meshkit.policy.config import check_pattern

log = logging.getLogger("meshkit.policy")

Listener = Callable[[str, bool], None]
Handler = Callable[[Any], Awaitable[Any]]


class Switches:
    def __init__(self, initial: Iterable[str] = ()) -> None:
        self.on: set[str] = set()
        self._listeners: list[Listener] = []
        for name in initial:
            self.set(name, True)

    def __contains__(self, name: object) -> bool:
        return name in self.on

    def set(self, name: str, on: bool) -> bool:
        """Turn ``name`` on or off; True if that changed anything. Listeners hear of changes."""
        check_pattern(name)
        if "*" in name:
            raise ValueError(f"a switch names one method, 'service.method'; got {name!r}")
        if name.startswith("meshkit-admin."):
            raise ValueError(f"{name} cannot be switched: it is how switches are turned back off")
        if (name in self.on) == on:
            return False
        if on:
            self.on.add(name)
        else:
            self.on.discard(name)
        log.warning("switch %s is now %s", name, "ON (answering with the fallback)" if on else "off")
        for listener in list(self._listeners):
            listener(name, on)
        return True

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def snapshot(self) -> dict[str, bool]:
        return dict.fromkeys(sorted(self.on), True)


_process = Switches()


def process_switches() -> Switches:
    """The switches every Server and Client of this process share unless given others."""
    return _process


def switched_off(switches: Switches, qualname: str) -> Callable[[Handler], Handler]:
    """The client's switch middleware for ``qualname``: while its switch is on, calls are refused
    here (UNAVAILABLE, ``not_processed``, ``reason = "switched"``), synchronously."""
    on = switches.on

    def middleware(next_handler: Handler) -> Handler:
        def switch(call: Any) -> Awaitable[Any]:
            if qualname in on:
                raise RpcError(
                    StatusCode.UNAVAILABLE,
                    f"{qualname} is degraded by a switch in this process (meshkit switch {qualname} off restores it)",
                    {"reason": "switched"},
                    not_processed=True,
                )
            return next_handler(call)

        return switch

    return middleware
