"""Review of "a client that disconnects before its answer cancels its request and the backend
call": the disconnect handler looks only at ``self.cycle``. uvicorn points ``self.cycle`` at the
newest request as soon as its head is parsed, and queues it while the previous one runs
(HTTP/1.1 pipelining). A client that pipelines a second request and then leaves therefore
cancels nothing: the running request (and its backend call) go on for nobody until the backend
answers or the deadline passes."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from meshkit import Server
from meshkit.gateway import GatewayApp, GatewayServer, parse
from meshkit.gateway.metrics import GatewayMetrics
from meshkit.rpc.middleware import Call, Handler
from tests.gateway.services import Orders
from tests.gateway.test_overload import CONFIG


async def test_a_client_that_pipelines_and_leaves_cancels_the_running_request() -> None:
    entered = asyncio.Event()
    cancelled = asyncio.Event()
    release = asyncio.Event()

    def held(next_handler: Handler) -> Handler:
        async def handler(call: Call) -> Any:
            entered.set()
            try:
                await release.wait()  # answers only when the test lets it (teardown)
            except asyncio.CancelledError:
                cancelled.set()
                raise
            return await next_handler(call)

        return handler

    async with Server([Orders()], middleware=[held]) as backend:
        app = GatewayApp(parse(CONFIG.format(address=backend.address)), metrics=GatewayMetrics(CollectorRegistry()))
        async with GatewayServer(app) as gw:
            try:
                _reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
                request = b"GET /orders/1 HTTP/1.1\r\nhost: x\r\n\r\n"
                writer.write(request + request)  # pipelined: the second waits for the first
                await asyncio.wait_for(entered.wait(), 10)
                assert app.in_progress == 1
                writer.close()  # the client gives up on both
                try:
                    await asyncio.wait_for(cancelled.wait(), 3)
                except TimeoutError:
                    pytest.fail(f"the backend call was not cancelled; in progress: {app.in_progress}")
            finally:
                release.set()  # let the stray request end so the gateway can stop
