"""Review of the gateway's OpenAPI document.

``openapi.build`` names each operation ``{method}_{service}_{method}_{len(paths)}``: the count of
distinct paths so far, which does not change for a route on a path already listed. So two routes
of the same HTTP method to the same call, the first on a path that another method already has,
get the same ``operationId`` (OpenAPI 3.1 4.8.10: "The id MUST be unique among all operations");
generated clients then drop or rename one of them.
"""

from __future__ import annotations

from collections import Counter

from meshkit.gateway import GatewayApp, parse

CONFIG = """
[gateway]
services = ["tests.gateway.services:Orders"]
[targets]
orders = "127.0.0.1:1"
[[routes]]
method = "POST"
path = "/orders"
call = "orders.place"
public = true
[[routes]]
method = "GET"
path = "/orders"
call = "orders.search"
public = true
[[routes]]
method = "GET"
path = "/legacy/orders"
call = "orders.search"
public = true
"""


def test_operation_ids_are_unique() -> None:
    document = GatewayApp(parse(CONFIG)).openapi()
    ids = Counter(op["operationId"] for item in document["paths"].values() for op in item.values())
    assert sum(ids.values()) == 3
    assert [name for name, n in ids.items() if n > 1] == []
