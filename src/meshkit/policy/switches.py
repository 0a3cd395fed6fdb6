"""Runtime switches: turn a method into its fallback (degrade it) while the process runs.

The switch set itself (:class:`Switches`, :func:`process_switches`) lives in
``meshkit.rpc.switches``, since rpc acts on it; it is re-exported here. This module holds the
client's switch middleware, which is governance.

A switch is a method name (``"inventory.reserve"``) that is on or off. Servers answer a
switched-on method with its ``@rpc(fallback=…)`` (or refuse it fast with UNAVAILABLE when it has
none); clients answer calls to it with their ``with_fallback(…)`` (or refuse them locally). Set
them from the policy file (``[switches]``), in code, or live with ``meshkit switch``.

One :class:`Switches` per process by default (:func:`process_switches`), so a switch reaches
every server and client of the process; tests pass their own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from meshkit.errors import RpcError, StatusCode
from meshkit.rpc.switches import Switches as Switches
from meshkit.rpc.switches import process_switches as process_switches

Handler = Callable[[Any], Awaitable[Any]]


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
