"""Review of "Gateway: max_requests_in_progress": the overload refusal is answered before the CORS
headers are added, unlike every other answer (404, 401, 429, 503 from a backend ...). A browser
then cannot read the 503 nor its Retry-After (it reports a CORS failure), and an OPTIONS
preflight under overload fails as "origin not allowed" from the browser's point of view."""

from __future__ import annotations

import httpx

from meshkit.gateway import GatewayApp, parse
from tests.gateway.test_overload import CONFIG

CORS = '[cors]\nallow_origins = ["https://app.test"]\n'


async def test_the_overload_refusal_carries_the_cors_headers() -> None:
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
