from __future__ import annotations

import pytest

from meshkit.resilience.breaker import BreakerConfig, BreakerState, CircuitBreaker
from meshkit.testing import FakeClock, serve
from tests.rpc.services import Greeter


def test_fake_clock_drives_a_breaker() -> None:
    clock = FakeClock(100.0)
    b = CircuitBreaker(BreakerConfig(min_calls=2, open_for=5))
    for _ in range(2):
        b.on_failure(clock())
    assert b.state is BreakerState.OPEN and not b.allow(clock())
    clock.advance(5)
    assert b.allow(clock()) and b.state is BreakerState.HALF_OPEN
    with pytest.raises(ValueError):
        clock.advance(-1)


async def test_serve_gives_a_server_and_a_client() -> None:
    async with serve(Greeter()) as (server, client):
        assert server.port > 0
        assert await client.proxy(Greeter).hello("kit") == "hello kit"
