"""Zipkin JSON v2: a ``meshkit run --trace zipkin`` process and a traced caller export to a Zipkin
receiver (``POST /api/v2/spans``, JSON) in this test; the server span is the child of the caller's."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.exporter.zipkin.json import ZipkinExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from meshkit import Client
from meshkit.observe import tracing
from meshkit.testing import spawn
from tests.observe.test_tracing import Back

ROOT = Path(__file__).resolve().parents[2]


class ZipkinReceiver:
    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.path == "/api/v2/spans":
                    receiver.spans.extend(json.loads(body))
                    self.send_response(202)
                else:
                    self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}/api/v2/spans"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def receiver() -> Iterator[ZipkinReceiver]:
    r = ZipkinReceiver()
    yield r
    r.stop()


@pytest.mark.slow
async def test_zipkin_json_from_a_running_process_and_a_caller(receiver: ZipkinReceiver) -> None:
    env = {"OTEL_EXPORTER_ZIPKIN_ENDPOINT": receiver.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "100"}
    with spawn(
        [sys.executable, "-m", "meshkit", "run", "tests.observe.test_tracing:Back", "--port", "0", "--trace", "zipkin"],
        ready=r"on (127\.0\.0\.1:\d+)",
        stderr="discard",
        cwd=ROOT,
        env=env,
        timeout=30,
    ) as proc:
        match = proc.ready_match
        assert match
        caller = TracerProvider(resource=Resource.create({"service.name": "caller"}))
        caller.add_span_processor(BatchSpanProcessor(ZipkinExporter(endpoint=receiver.endpoint)))
        async with Client(target=match.group(1), middleware=[tracing.middleware("client", caller)]) as client:
            assert await client.proxy(Back).work(4) == 8
        caller.force_flush()
        assert proc.stop(grace=30) == 0 and not proc.escalated  # flushes its batched spans on the way out
    by_kind = {s["kind"]: s for s in receiver.spans}
    client_span, server_span = by_kind["CLIENT"], by_kind["SERVER"]
    assert server_span["traceId"] == client_span["traceId"]
    assert server_span["parentId"] == client_span["id"]
    assert server_span["name"] == "back/work"
    assert server_span["localEndpoint"]["serviceName"] == "back"
    assert server_span["tags"]["rpc.system"] == "meshkit"
