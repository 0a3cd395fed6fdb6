"""A client that pipelines requests (HTTP/1.1) and then leaves cancels all of them: the request that
is running, and its backend call, are cancelled rather than left to run for nobody, and it ends as
a quiet 499, with no error logged by uvicorn."""

from __future__ import annotations

import asyncio
import logging
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


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def test_a_client_that_pipelines_and_leaves_gets_a_quiet_499_not_an_asgi_error() -> None:
    entered = asyncio.Event()
    cancelled = asyncio.Event()
    release = asyncio.Event()

    def held(next_handler: Handler) -> Handler:
        async def handler(call: Call) -> Any:
            entered.set()
            try:
                await release.wait()
            except asyncio.CancelledError:
                cancelled.set()
                raise
            return await next_handler(call)

        return handler

    records = _Records()
    uvicorn_log = logging.getLogger("uvicorn.error")
    try:
        async with Server([Orders()], middleware=[held]) as backend:
            metrics = GatewayMetrics(CollectorRegistry())
            app = GatewayApp(parse(CONFIG.format(address=backend.address)), metrics=metrics)
            async with GatewayServer(app) as gw:
                uvicorn_log.addHandler(records)  # after uvicorn configured its logging (that resets handlers)
                try:
                    _reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
                    request = b"GET /orders/1 HTTP/1.1\r\nhost: x\r\n\r\n"
                    writer.write(request + request)  # pipelined: the second waits for the first
                    await asyncio.wait_for(entered.wait(), 10)
                    writer.close()
                    await asyncio.wait_for(cancelled.wait(), 5)
                    loop = asyncio.get_running_loop()
                    end = loop.time() + 5
                    while metrics.requests.get(("GET /orders/{order_id}", "499"), 0) == 0:
                        assert loop.time() < end, "the running request was never counted as 499"
                        await asyncio.sleep(0.01)
                    # let run_asgi finish after the app returned (its log line comes then)
                    assert gw._server is not None
                    tasks = gw._server.server_state.tasks
                    while tasks:
                        assert loop.time() < end, "the request's task never ended"
                        await asyncio.sleep(0.01)
                finally:
                    release.set()
    finally:
        uvicorn_log.removeHandler(records)
    errors = [r.getMessage() for r in records.records if r.levelno >= logging.ERROR]
    assert errors == [], errors
