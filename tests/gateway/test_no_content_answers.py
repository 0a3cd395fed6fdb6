"""A route whose ``status`` is 204 answers without a body (RFC 9110 6.4.1), so a kept-alive
connection stays usable: nothing is left to be read as the start of the next answer.
"""

from __future__ import annotations

import asyncio

import httpx

from meshkit import Server, Service, rpc
from meshkit.gateway import GatewayApp, GatewayServer, parse


class Things(Service, name="things"):
    @rpc
    async def remove(self, thing_id: str) -> None:
        return None


CONFIG = """
[gateway]
port = 0
[targets]
things = "{address}"
[[routes]]
method = "DELETE"
path = "/things/{{thing_id}}"
call = "things.remove"
status = 204
public = true
"""


async def test_a_204_route_sends_no_body_and_the_connection_stays_usable() -> None:
    async with Server([Things()]) as backend:
        async with GatewayServer(GatewayApp(parse(CONFIG.format(address=backend.address)))) as gw:
            reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
            writer.write(
                b"DELETE /things/a HTTP/1.1\r\nHost: x\r\n\r\n"
                b"DELETE /things/b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            await writer.drain()
            async with asyncio.timeout(10):
                raw = await reader.read()
            writer.close()
            async with httpx.AsyncClient(base_url=f"http://{gw.address}") as http:
                statuses = []
                for name in ("c", "d"):  # one kept-alive connection
                    try:
                        statuses.append((await http.delete(f"/things/{name}")).status_code)
                    except httpx.RemoteProtocolError as exc:
                        statuses.append(str(exc))
    assert b"null" not in raw, raw  # no body after either head
    assert statuses == [204, 204]
