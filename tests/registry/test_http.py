"""The registry's HTTP/JSON API, spoken by hand as a non-Python service would."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from meshkit.registry import RegistryService
from meshkit.registry.http import RegistryHttp


@pytest.fixture
async def api() -> AsyncIterator[RegistryHttp]:
    http = RegistryHttp(RegistryService())
    await http.start("127.0.0.1", 0)
    yield http
    await http.stop()


async def request(port: int, method: str, path: str, body: Any = None, raw: bytes | None = None) -> tuple[int, Any]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else b"")
    if raw is None:
        writer.write(f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(data)}\r\n\r\n".encode() + data)
    else:
        writer.write(raw)
    await writer.drain()
    response = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, payload = response.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    try:
        return status, json.loads(payload)
    except ValueError:
        return status, payload.decode()


INSTANCE = {"service": "billing", "host": "10.0.0.7", "port": 8080, "id": "go-1", "weight": 50}


async def test_register_list_heartbeat_deregister(api: RegistryHttp) -> None:
    status, body = await request(api.port, "POST", "/v1/register", {"instance": INSTANCE, "ttl": 10})
    assert status == 200 and isinstance(body["lease"], int)
    lease = body["lease"]
    status, body = await request(api.port, "GET", "/v1/instances/billing")
    assert status == 200 and [i["id"] for i in body["instances"]] == ["go-1"] and body["instances"][0]["weight"] == 50
    status, body = await request(api.port, "POST", "/v1/heartbeat", {"leases": [lease, 999]})
    assert status == 200 and body == {"unknown": [999]}
    status, body = await request(api.port, "POST", "/v1/deregister", {"id": "go-1"})
    assert status == 200 and body == {"deregistered": True}
    status, body = await request(api.port, "GET", "/v1/instances/billing")
    assert body["instances"] == []


async def test_long_poll_watch_answers_on_change(api: RegistryHttp) -> None:
    _, first = await request(api.port, "GET", "/v1/instances/billing")
    poll = asyncio.create_task(request(api.port, "GET", f"/v1/watch/billing?revision={first['revision']}&timeout=10"))
    await asyncio.sleep(0)
    assert not poll.done()
    await request(api.port, "POST", "/v1/register", {"instance": INSTANCE})
    status, body = await asyncio.wait_for(poll, 10)
    assert status == 200 and [i["id"] for i in body["instances"]] == ["go-1"]
    assert body["revision"] > first["revision"]


async def test_long_poll_times_out_with_the_same_snapshot(api: RegistryHttp) -> None:
    status, body = await request(api.port, "GET", "/v1/watch/none?revision=0&timeout=0.05")
    assert status == 200 and body == {"instances": [], "revision": 0}


async def test_metrics_and_stats(api: RegistryHttp) -> None:
    await request(api.port, "POST", "/v1/register", {"instance": INSTANCE})
    status, text = await request(api.port, "GET", "/metrics")
    assert (
        status == 200
        and "meshkit_registry_leases 1" in text
        and "# TYPE meshkit_registry_renewals_total counter" in text
    )
    status, body = await request(api.port, "GET", "/v1/stats")
    assert body["leases"] == 1 and body["registrations"] == 1


@pytest.mark.parametrize(
    ("method", "path", "body", "raw", "status", "says"),
    [
        ("POST", "/v1/register", {"instance": {"service": "x"}}, None, 400, "bad instance"),
        ("POST", "/v1/register", {"instance": INSTANCE, "ttl": "ten"}, None, 400, "ttl"),
        ("POST", "/v1/register", {"instance": INSTANCE, "ttl": -5}, None, 400, "ttl"),
        ("POST", "/v1/heartbeat", {"leases": ["a"]}, None, 400, "integers"),
        ("POST", "/v1/deregister", {"id": 5}, None, 400, "string"),
        ("GET", "/v1/watch/x?revision=abc", None, None, 400, "revision"),
        ("GET", "/nope", None, None, 404, "no such path"),
        ("DELETE", "/v1/register", None, None, 405, "not allowed"),
        ("", "", None, b"POST /v1/register HTTP/1.1\r\nContent-Length: 5\r\n\r\nnope!", 400, "not JSON"),
        ("", "", None, b"POST /v1/register HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n", 413, "over the limit"),
        ("", "", None, b"GARBAGE\r\n\r\n", 400, "malformed request line"),
        ("", "", None, b"GET / HTTP/1.1\r\n" + b"X: " + b"y" * 10_000 + b"\r\n\r\n", 413, "headers"),
    ],
)
async def test_bad_requests_get_clear_errors(
    api: RegistryHttp, method: str, path: str, body: Any, raw: bytes | None, status: int, says: str
) -> None:
    got_status, got = await request(api.port, method, path, body, raw)
    assert got_status == status
    assert says in got["error"]
    # The server is still fine afterwards.
    assert (await request(api.port, "GET", "/v1/stats"))[0] == 200
