"""Routing, argument mapping and status translation, through real HTTP to a real service."""

from __future__ import annotations

import pytest

from meshkit import StatusCode
from meshkit.gateway.mapping import HTTP_STATUS
from tests.gateway.conftest import API_KEY, Factory, Keys

READ = {"x-api-key": API_KEY}


async def test_path_parameter_is_typed_and_the_result_is_json(gateway: Factory) -> None:
    async with gateway() as http:
        r = await http.get("/api/orders/1", headers=READ)
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {"id": 1, "item": "apple", "quantity": 2, "tags": []}


async def test_query_parameters_map_to_arguments_repeated_ones_to_lists(gateway: Factory) -> None:
    async with gateway() as http:
        r = await http.get("/api/orders", params=[("item", "apple"), ("limit", "5"), ("tags", "a")], headers=READ)
        assert r.status_code == 200 and [o["id"] for o in r.json()] == [1]
        r = await http.get("/api/orders", params=[("item", "apple"), ("tags", "a"), ("tags", "b")], headers=READ)
        assert r.status_code == 200
        r = await http.get("/api/orders", params={"item": "apple", "limit": "many"}, headers=READ)
        assert r.status_code == 400 and "limit" in r.json()["message"]


async def test_json_body_maps_to_arguments_with_the_route_status(gateway: Factory, keys: Keys) -> None:
    token = keys.token(scope="orders:write")
    async with gateway() as http:
        r = await http.post(
            "/api/orders", json={"item": "pear", "quantity": 3}, headers={"authorization": f"Bearer {token}"}
        )
    assert r.status_code == 201
    assert r.json() == {"id": 2, "item": "pear", "quantity": 3, "tags": []}


@pytest.mark.parametrize(
    ("body", "content_type", "status", "words"),
    [
        (b'{"item": "pear", "quantity": "three"}', "application/json", 400, "quantity"),
        (b'{"quantity": 3}', "application/json", 400, "item"),
        (b'{"item": "pear", "colour": "red"}', "application/json", 400, "colour"),
        (b"[1, 2]", "application/json", 400, "object"),
        (b"{not json", "application/json", 400, "JSON"),
        (b"item=pear", "application/x-www-form-urlencoded", 415, "application/json"),
    ],
)
async def test_bad_bodies_are_400s_naming_what_is_wrong(
    gateway: Factory, keys: Keys, body: bytes, content_type: str, status: int, words: str
) -> None:
    token = keys.token(scope="orders:write")
    headers = {"authorization": f"Bearer {token}", "content-type": content_type}
    async with gateway() as http:
        r = await http.post("/api/orders", content=body, headers=headers)
    assert r.status_code == status, r.text
    assert words in r.json()["message"]


async def test_an_argument_given_twice_is_refused(gateway: Factory) -> None:
    async with gateway() as http:
        r = await http.get("/api/orders/1", params={"order_id": "2"}, headers=READ)
    assert r.status_code == 400 and "twice" in r.json()["message"]


@pytest.mark.parametrize("code", [c for c in StatusCode if c is not StatusCode.OK])
async def test_every_status_code_maps_to_its_http_status(gateway: Factory, code: StatusCode) -> None:
    async with gateway() as http:
        r = await http.post(f"/api/fail/{int(code)}")
    assert r.status_code == HTTP_STATUS[code]
    body = r.json()
    assert body["code"] == code.name and body["request_id"] == r.headers["x-request-id"]
    if r.status_code < 500:
        assert code.name in body["message"]  # the service's message, for the caller to act on
    else:
        assert code.name not in body["message"]  # a generic one: the details go to the log


def test_the_mapping_is_grpcs() -> None:
    assert HTTP_STATUS[StatusCode.NOT_FOUND] == 404
    assert HTTP_STATUS[StatusCode.UNAUTHENTICATED] == 401
    assert HTTP_STATUS[StatusCode.RESOURCE_EXHAUSTED] == 429
    assert HTTP_STATUS[StatusCode.UNAVAILABLE] == 503
    assert HTTP_STATUS[StatusCode.DEADLINE_EXCEEDED] == 504
    assert HTTP_STATUS[StatusCode.FAILED_PRECONDITION] == 400
    assert set(HTTP_STATUS) == set(StatusCode)


async def test_unknown_path_is_404_and_wrong_method_405_with_allow(gateway: Factory) -> None:
    async with gateway() as http:
        missing = await http.get("/api/nothing")
        wrong = await http.delete("/api/orders")
    assert missing.status_code == 404
    assert wrong.status_code == 405 and wrong.headers["allow"] == "GET, HEAD, POST"


async def test_request_id_is_kept_when_sane_and_made_otherwise(gateway: Factory) -> None:
    async with gateway() as http:
        kept = await http.get("/public/orders/1", headers={"x-request-id": "req-123"})
        made = await http.get("/public/orders/1", headers={"x-request-id": "bad id with spaces"})
        seen = await http.get("/api/whoami", headers={**READ, "x-request-id": "req-456"})
    assert kept.headers["x-request-id"] == "req-123"
    assert made.headers["x-request-id"] != "bad id with spaces" and len(made.headers["x-request-id"]) == 32
    assert seen.json()["request-id"] == "req-456"  # and the service sees the same id


async def test_body_over_the_limit_is_413_before_it_is_read(gateway: Factory, keys: Keys) -> None:
    token = keys.token(scope="orders:write")
    async with gateway(extra="", jwt_section=None) as http:
        http.gateway.app.config.gateway.max_body_bytes = 100  # type: ignore[attr-defined]
        http.gateway.app._max_body = 100  # type: ignore[attr-defined]
        big = {"item": "x" * 200}
        r = await http.post("/api/orders", json=big, headers={"authorization": f"Bearer {token}"})
        assert r.status_code == 413

        async def chunks():  # type: ignore[no-untyped-def]  # no Content-Length: chunked, counted while read
            for _ in range(10):
                yield b"x" * 50

        r = await http.post(
            "/api/orders",
            content=chunks(),
            headers={"authorization": f"Bearer {token}", "content-type": "application/json"},
        )
        assert r.status_code == 413


async def test_only_named_headers_are_forwarded(gateway: Factory) -> None:
    async with gateway() as http:
        r = await http.get("/api/whoami", headers={**READ, "x-tenant": "acme", "x-user": "mallory"})
    assert r.json()["x-tenant"] == "acme"
    assert r.json()["x-user"] is None


async def test_cors_preflight_and_simple_requests(gateway: Factory) -> None:
    extra = '[cors]\nallow_origins = ["https://app.test"]\n'
    async with gateway(extra=extra) as http:
        pre = await http.options(
            "/api/orders", headers={"origin": "https://app.test", "access-control-request-method": "POST"}
        )
        simple = await http.get("/public/orders/1", headers={"origin": "https://app.test"})
        other = await http.get("/public/orders/1", headers={"origin": "https://evil.test"})
        other_pre = await http.options(
            "/api/orders", headers={"origin": "https://evil.test", "access-control-request-method": "POST"}
        )
    assert pre.status_code == 204 and pre.headers["access-control-allow-origin"] == "https://app.test"
    assert "POST" in pre.headers["access-control-allow-methods"]
    assert simple.headers["access-control-allow-origin"] == "https://app.test"
    assert "access-control-allow-origin" not in other.headers
    assert other_pre.status_code == 403


async def test_a_service_that_is_down_is_503(keys: Keys, tmp_path_factory: pytest.TempPathFactory) -> None:
    import httpx

    from meshkit.gateway import GatewayApp, GatewayServer, parse
    from tests.gateway.conftest import config_text

    keys_dir = next(iter(tmp_path_factory.getbasetemp().glob("keys*")))
    config = parse(config_text("127.0.0.1:1", keys_dir))  # nothing listens on port 1
    config.gateway.call_timeout = 2.0
    async with GatewayServer(GatewayApp(config)) as gw, httpx.AsyncClient(base_url=f"http://{gw.address}") as http:
        r = await http.get("/public/orders/1")
    assert r.status_code == 503 and r.json()["code"] == "UNAVAILABLE"
