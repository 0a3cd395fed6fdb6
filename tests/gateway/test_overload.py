"""Past ``max_requests_in_progress`` the gateway refuses at once (503, Retry-After, JSON error,
counted under the route "overloaded") instead of queueing without bound."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from prometheus_client import CollectorRegistry

from meshkit import Server
from meshkit.gateway import GatewayApp, GatewayServer, parse
from meshkit.gateway.metrics import GatewayMetrics
from meshkit.rpc.middleware import Call, Handler
from tests.gateway.services import Orders

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
