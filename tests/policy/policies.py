"""Client policies for the policy tests: no shedding, a fake clock and sleeps that return at once."""

from __future__ import annotations

from typing import Any

from meshkit.policy import ClientRule, Policy, PolicyConfig, Shedding, Switches
from meshkit.testing import FakeClock

NO_SHED = Shedding(enabled=False)


async def no_sleep(_: float) -> None:
    return None


def client_policy(clock: Any = None, **rules: ClientRule) -> Policy:
    """A policy with ``rules`` for the client side, keyed ``service__method`` (``__`` for ``.``)."""
    config = PolicyConfig(shedding=NO_SHED, client={k.replace("__", "."): v for k, v in rules.items()})
    return Policy(config, clock=clock or FakeClock(), sleep=no_sleep, switches=Switches())
