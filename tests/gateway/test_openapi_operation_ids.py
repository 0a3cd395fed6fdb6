"""Every operation in the gateway's OpenAPI document has its own ``operationId`` (OpenAPI 3.1
4.8.10: "The id MUST be unique among all operations"), including two routes of the same HTTP method
to the same call, the first on a path another method also has.
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
