"""schemathesis against the gateway's own OpenAPI (generated from the services' type hints):
every operation, valid and invalid inputs, never a 5xx. A real HTTP run by the schemathesis CLI
against a gateway and a service on loopback."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import sys
from pathlib import Path

from tests.gateway.conftest import API_KEY, Factory


async def test_openapi_document_describes_the_routes(gateway: Factory) -> None:
    async with gateway() as http:
        doc = (await http.get("/openapi.json")).json()
        page = await http.get("/docs")
    assert doc["openapi"] == "3.1.0"
    get = doc["paths"]["/api/orders/{order_id}"]["get"]
    assert get["parameters"][0] == {"name": "order_id", "in": "path", "required": True, "schema": {"type": "integer"}}
    assert get["security"] == [{"bearerAuth": ["orders:read"]}, {"apiKeyAuth": []}]
    post = doc["paths"]["/api/orders"]["post"]
    body = post["requestBody"]["content"]["application/json"]["schema"]
    assert body["required"] == ["item"] and set(body["properties"]) == {"item", "quantity", "tags"}
    assert post["responses"]["201"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Order"}
    assert "security" not in doc["paths"]["/public/orders/{order_id}"]["get"]
    assert page.status_code == 200 and "openapi.json" in page.text


async def test_schemathesis_finds_no_server_error(gateway: Factory, tmp_path: Path) -> None:
    cli = shutil.which("schemathesis") or shutil.which("st")
    assert cli is not None, "schemathesis is not installed: python -m pip install -e '.[test]'"
    # Only routes that cannot legitimately answer 5xx (the /api/fail route exists to do so).
    async with gateway() as http:
        address = http.gateway.address  # type: ignore[attr-defined]
        doc = (await http.get("/openapi.json")).json()
        doc["paths"].pop("/api/fail/{code}")
        spec = tmp_path / "openapi.json"
        spec.write_text(json.dumps(doc))
        report = tmp_path / "report.json"
        proc = await asyncio.create_subprocess_exec(
            cli,
            "run",
            str(spec),
            "--url",
            f"http://{address}",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            "25",
            "--seed",
            "1",
            "--header",
            f"X-API-Key: {API_KEY}",
            "--report",
            "ndjson",
            "--report-ndjson-path",
            str(report),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=300)
        text = out.decode(errors="replace")
        # The gateway is still up and answering after the run.
        assert (await http.get("/public/orders/1")).status_code == 200
    (tmp_path / "out.txt").write_text(text)
    sys.stdout.write(text[-1500:])
    assert proc.returncode == 0, text[-4000:]
    counts = re.search(r"(\d+) generated, (\d+) passed", text)
    assert counts is not None, text[-2000:]
    generated, passed = map(int, counts.groups())
    assert generated == passed and generated >= 100, text[-2000:]
