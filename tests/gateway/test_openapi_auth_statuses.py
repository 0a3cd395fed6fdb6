"""The OpenAPI document lists 401 and 403 only where a route can answer them: 401 for a route that
needs credentials, 403 for one that also asks for scopes; a public route lists neither, whatever
its method, and an operation without ``security`` never lists them."""

from __future__ import annotations

import pytest

from meshkit.gateway import GatewayApp, parse

CONFIG = """
[gateway]
services = ["tests.gateway.services:Orders"]
[targets]
orders = "127.0.0.1:1"
[auth]
api_keys = [{ name = "ci", key = "key-for-the-ci-caller-0123456789", scopes = ["orders:read"] }]
[[routes]]
method = "GET"
path = "/public/orders/{order_id}"
call = "orders.get"
public = true
[[routes]]
method = "POST"
path = "/public/orders"
call = "orders.place"
public = true
[[routes]]
method = "GET"
path = "/signed-in/orders/{order_id}"
call = "orders.get"
[[routes]]
method = "GET"
path = "/scoped/orders/{order_id}"
call = "orders.get"
scopes = ["orders:read"]
"""


@pytest.fixture(scope="module")
def paths() -> dict[str, dict[str, dict[str, object]]]:
    document = GatewayApp(parse(CONFIG)).openapi()
    return document["paths"]  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("path", "method", "listed"),
    [
        ("/public/orders/{order_id}", "get", set()),
        ("/public/orders", "post", set()),
        ("/signed-in/orders/{order_id}", "get", {"401"}),
        ("/scoped/orders/{order_id}", "get", {"401", "403"}),
    ],
)
def test_auth_statuses_are_listed_only_for_routes_with_auth(
    paths: dict[str, dict[str, dict[str, object]]], path: str, method: str, listed: set[str]
) -> None:
    operation = paths[path][method]
    responses = operation["responses"]
    assert isinstance(responses, dict)
    assert {s for s in responses if s in ("401", "403")} == listed
    assert ("security" in operation) == bool(listed)
    assert {"400", "404", "429", "500", "503", "504"} <= set(responses)  # the others stay
