"""Runtime switches: the set of methods answered by their fallback (degraded) while the process
runs, and the one set a process shares by default.

A switch is a method name (``"inventory.reserve"``) that is on or off. The set lives in rpc, not
in governance, because rpc is what acts on it: a Server swaps a switched-on route's handler for
its fallback, a Client answers calls to it with its ``with_fallback(…)``, and the admin service
turns switches on and off. Governance (``meshkit.policy``) only fills the set from the policy
file's ``[switches]`` and adds the client's switch middleware.

One :class:`Switches` per process by default (:func:`process_switches`), so a switch reaches
every server and client of the process; tests pass their own.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

__all__ = ["Switches", "check_pattern", "process_switches"]

log = logging.getLogger("meshkit.policy")  # the logger operators already watch for switches

Listener = Callable[[str, bool], None]


def check_pattern(key: str) -> None:
    """``key`` names methods the way rules and switches do: ``'service.method'``, ``'service.*'``
    or ``'*'``; else ValueError. Defined here, once: switches (rpc) and policy rules
    (``meshkit.policy.config``, which raises it as a PolicyError) use the same check."""
    service, dot, method = key.partition(".")
    if key == "*" or (dot and service and method and "*" not in service and (method == "*" or "*" not in method)):
        return
    raise ValueError(f"bad rule key {key!r}: use 'service.method', 'service.*' or '*'")


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
