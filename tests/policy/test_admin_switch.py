"""The admin service's ``switch`` stays usable: it answers while the server sheds load (when an
operator most needs to degrade a method), and it cannot switch itself off for good."""

from __future__ import annotations

import asyncio

from meshkit import Client, RpcError, Server, StatusCode
from meshkit.policy import Policy, PolicyConfig, Shedding, Switches
from tests.policy.services import Stock


async def test_the_admin_switch_still_answers_when_the_server_sheds() -> None:
    stock = Stock()
    stock.gate = asyncio.Event()
    switches = Switches()
    p = Policy(PolicyConfig(shedding=Shedding(initial_limit=2, min_limit=2)), switches=switches)
    token = {"authorization": "Bearer t"}
    async with (
        Server([stock], policy=p, middleware=[], admin=True, admin_token="t") as server,
        Client(target=server.address, metadata=token) as client,
    ):
        held = [asyncio.create_task(client.proxy(Stock).peek(str(i))) for i in range(2)]
        while stock.calls < 2:
            await asyncio.sleep(0.001)
        try:
            # Overloaded is exactly when the operator degrades a method: that call must get through.
            await client.call("meshkit-admin", "switch", {"name": "stock.peek", "on": True})
            assert "stock.peek" in switches
        finally:
            stock.gate.set()
            await asyncio.gather(*held, return_exceptions=True)


async def test_the_admin_service_cannot_switch_itself_off() -> None:
    switches = Switches()
    token = {"authorization": "Bearer t"}
    async with (
        Server([Stock()], switches=switches, admin=True, admin_token="t") as server,
        Client(target=server.address, metadata=token) as client,
    ):
        try:
            await client.call("meshkit-admin", "switch", {"name": "meshkit-admin.switch", "on": True})
        except RpcError as exc:
            assert exc.code is StatusCode.INVALID_ARGUMENT  # refusing is fine
            return
        # Accepted: then it must be possible to undo it the same way.
        await client.call("meshkit-admin", "switch", {"name": "meshkit-admin.switch", "on": False})
