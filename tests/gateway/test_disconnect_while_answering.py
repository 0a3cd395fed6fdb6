"""A client that disconnects while its answer is being sent ends as a quiet 499 wherever the
request's task was suspended (reading the body, sending a refusal, sending the OpenAPI document):
nothing escapes the app to uvicorn, and the request is counted once.

A send suspends when the connection's writes are paused (a client that did not read a large
answer, sent another request on the same keep-alive connection and left). The tests play the
server's part directly: ``send`` never returns, and the task is cancelled with
``scope["meshkit.disconnected"]`` set, as HeaderTimeoutProtocol.connection_lost does."""

from __future__ import annotations

import asyncio
from typing import Any

from prometheus_client import CollectorRegistry

from meshkit.gateway import GatewayApp, parse
from meshkit.gateway.metrics import GatewayMetrics
from tests.gateway.test_overload import CONFIG


async def _disconnect_while_answering(
    path: bytes, *, block_in_receive: bool = False
) -> tuple[BaseException | None, dict[tuple[str, str], int]]:
    metrics = GatewayMetrics(CollectorRegistry())
    app = GatewayApp(parse(CONFIG.format(address="127.0.0.1:9")), metrics=metrics, clients={})
    sending = asyncio.Event()
    scope: dict[str, Any] = {
        "type": "http",
        "method": "GET",
        "path": path.decode(),
        "raw_path": path,
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"x")],
        "client": ("127.0.0.1", 1),
    }

    async def receive() -> dict[str, Any]:
        if block_in_receive:
            sending.set()
            await asyncio.Event().wait()  # the body has not arrived yet
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sending.set()
        await asyncio.Event().wait()  # writes paused: the client does not read

    task = asyncio.create_task(app(scope, receive, send))
    await asyncio.wait_for(sending.wait(), 5)
    scope["meshkit.disconnected"] = True  # what connection_lost does
    task.cancel()
    escaped: BaseException | None = None
    try:
        await asyncio.wait_for(task, 5)
    except BaseException as exc:  # what reaches uvicorn's run_asgi
        escaped = exc
    return escaped, metrics.requests


async def test_a_disconnect_while_reading_the_body_is_a_quiet_499() -> None:
    # Cancelled while it waits for the body: counted once, quietly.
    escaped, requests = await _disconnect_while_answering(b"/orders/1", block_in_receive=True)
    assert escaped is None
    assert requests == {("GET /orders/{order_id}", "499"): 1}


async def test_a_disconnect_while_answering_a_refusal_is_a_quiet_499() -> None:
    escaped, requests = await _disconnect_while_answering(b"/no/such/route")
    assert escaped is None, f"{type(escaped).__name__} escaped the app"
    assert sum(requests.values()) == 1, requests


async def test_a_disconnect_while_sending_the_openapi_document_is_quiet() -> None:
    escaped, requests = await _disconnect_while_answering(b"/openapi.json")
    assert escaped is None, f"{type(escaped).__name__} escaped the app"
    assert sum(requests.values()) == 1, requests
