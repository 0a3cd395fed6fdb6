"""Past ``max_requests_in_progress`` the gateway refuses at once (503, Retry-After, JSON error,
counted under the route "overloaded") instead of queueing without bound."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import httpx
from prometheus_client import CollectorRegistry

from meshkit import Server
from meshkit.gateway import GatewayApp, GatewayServer, parse
from meshkit.gateway.metrics import GatewayMetrics
from meshkit.rpc.middleware import Call, Handler
from tests.gateway.services import Order, Orders

CONFIG = """
[gateway]
port = 0
max_requests_in_progress = 2
services = ["tests.gateway.services:Orders"]
[targets]
orders = "{address}"
[[routes]]
method = "GET"
path = "/orders/{{order_id}}"
call = "orders.get"
public = true
"""


async def test_requests_past_the_limit_are_refused_at_once_and_the_rest_served() -> None:
    gate = asyncio.Event()
    arrived = 0

    def held(next_handler: Handler) -> Handler:
        async def handler(call: Call) -> Any:
            nonlocal arrived
            arrived += 1
            await gate.wait()  # the backend answers when the test says so
            return await next_handler(call)

        return handler

    async with Server([Orders()], middleware=[held]) as backend:
        metrics = GatewayMetrics(CollectorRegistry())
        app = GatewayApp(parse(CONFIG.format(address=backend.address)), metrics=metrics)
        async with GatewayServer(app) as gw, httpx.AsyncClient(base_url=f"http://{gw.address}") as http:
            first = [asyncio.create_task(http.get("/orders/1")) for _ in range(2)]
            loop = asyncio.get_running_loop()
            end = loop.time() + 10
            while arrived < 2:  # both are in progress (waiting on the backend)
                assert loop.time() < end, "the first two requests never reached the backend"
                await asyncio.sleep(0.01)
            assert app.in_progress == 2
            refused = await http.get("/orders/1")
            assert refused.status_code == 503
            assert refused.headers["retry-after"] == "1"
            body = refused.json()
            assert body["code"] == "UNAVAILABLE" and "limit of 2 requests" in body["message"]
            assert body["request_id"] == refused.headers["x-request-id"]
            gate.set()
            assert [r.status_code for r in await asyncio.gather(*first)] == [200, 200]
            assert app.in_progress == 0
            assert (await http.get("/orders/1")).status_code == 200  # below the limit again
            assert metrics.requests[("overloaded", "503")] == 1


async def test_a_client_that_leaves_cancels_its_request_and_the_backend_call() -> None:
    entered = asyncio.Event()
    cancelled = asyncio.Event()

    def held(next_handler: Handler) -> Handler:
        async def handler(call: Call) -> Any:
            entered.set()
            try:
                await asyncio.Event().wait()  # never answers by itself
            except asyncio.CancelledError:
                cancelled.set()
                raise
            return await next_handler(call)

        return handler

    async with Server([Orders()], middleware=[held]) as backend:
        metrics = GatewayMetrics(CollectorRegistry())
        app = GatewayApp(parse(CONFIG.format(address=backend.address)), metrics=metrics)
        async with GatewayServer(app) as gw:
            _reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
            writer.write(b"GET /orders/1 HTTP/1.1\r\nhost: x\r\n\r\n")
            await asyncio.wait_for(entered.wait(), 10)
            assert app.in_progress == 1
            writer.close()  # the client gives up
            await asyncio.wait_for(cancelled.wait(), 10)  # the backend's handler was stopped
            loop = asyncio.get_running_loop()
            end = loop.time() + 10
            while app.in_progress:
                assert loop.time() < end, "the request outlived its client"
                await asyncio.sleep(0.01)
            assert metrics.requests[("GET /orders/{order_id}", "499")] == 1


async def test_a_client_that_never_reads_its_answer_is_cut_off_after_the_write_timeout() -> None:
    orders = Orders()
    orders.orders.update({i: Order(i, "apple", 1, ["t" * 60]) for i in range(2, 20_000)})  # ~2 MB of JSON
    config = CONFIG.replace("max_requests_in_progress = 2", "write_timeout = 0.5") + (
        '[[routes]]\nmethod = "GET"\npath = "/search"\ncall = "orders.search"\npublic = true\n'
    )
    async with Server([orders], middleware=[]) as backend:
        app = GatewayApp(parse(config.format(address=backend.address)))
        async with GatewayServer(app) as gw:
            assert gw._socket is not None
            gw._socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)  # accepted sockets inherit it
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", gw.port))
            reader, writer = await asyncio.open_connection(sock=sock)
            writer.write(b"GET /search?item=apple&limit=20000 HTTP/1.1\r\nhost: x\r\n\r\n")
            # uvicorn hands the whole answer to the transport at once (the request is done), so it
            # is the connection, holding ~2 MB for a client that reads nothing, that must go.
            assert gw._server is not None
            connections = gw._server.server_state.connections
            loop = asyncio.get_running_loop()
            end = loop.time() + 10
            while not connections:
                assert loop.time() < end, "the connection never arrived"
                await asyncio.sleep(0.01)
            while connections:
                assert loop.time() < end, "a client that reads nothing holds its connection for ever"
                await asyncio.sleep(0.01)
            # The connection was closed by the gateway: reading now ends (after what was buffered).
            received = 0
            try:
                async with asyncio.timeout(10):
                    while chunk := await reader.read(65536):
                        received += len(chunk)
            except ConnectionError:
                pass
            assert received < 2_000_000, "the whole answer arrived: the client was not cut off"
            writer.close()


CORS = '[cors]\nallow_origins = ["https://app.test"]\n'


async def test_the_overload_refusal_carries_the_cors_headers() -> None:
    """A browser can read the 503 and its Retry-After: the refusal carries the CORS headers, as every
    other answer does."""
    app = GatewayApp(parse(CONFIG.format(address="127.0.0.1:9") + CORS), clients={})
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
        assert (await http.get("/nope", headers={"origin": "https://app.test"})).headers[
            "access-control-allow-origin"
        ] == "https://app.test"  # below the limit: every answer carries them
        app.in_progress = app.config.gateway.max_requests_in_progress  # as if that many were running
        refused = await http.get("/nope", headers={"origin": "https://app.test"})
        assert refused.status_code == 503
        assert refused.headers.get("access-control-allow-origin") == "https://app.test"
