from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from meshkit import Client, Server
from tests.rpc.services import Greeter, Probe


@pytest.fixture
def probe() -> Probe:
    return Probe()


@pytest.fixture
async def server(probe: Probe) -> AsyncIterator[Server]:
    srv = Server([Greeter(probe)], middleware=[])
    await srv.start()
    yield srv
    await srv.stop(grace=1)


@pytest.fixture
async def client(server: Server) -> AsyncIterator[Client]:
    c = Client(target=server.address)
    yield c
    await c.close()
