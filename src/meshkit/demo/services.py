"""The demo's two services. ``Order.place`` calls ``Inventory.reserve``: a nested call that inherits
the caller's deadline, so a slow inventory can never hold an order past its budget."""

from __future__ import annotations

import asyncio
import os
import random
from typing import Any

import msgspec

from meshkit import Client, RpcError, Service, StatusCode, rpc
from meshkit.demo.restock import RestockJob
from meshkit.policy import Breaker, ClientRule, Policy, PolicyConfig, Retry, Shedding


class Reservation(msgspec.Struct):
    sku: str
    qty: int
    left: int
    served_by: str = ""


class OrderRequest(msgspec.Struct):
    customer: str
    sku: str
    qty: int = 1


class OrderResult(msgspec.Struct):
    order_id: int
    sku: str
    qty: int
    stock_left: int
    inventory: str = ""  # which inventory instance reserved the stock


SKUS = ("apple", "pear", "plum", "fig", "kiwi")
#: How ``Inventory.reserve`` says it has too little stock (FAILED_PRECONDITION): the demo's
#: driver counts these answers as an expected outcome of their own, not as errors.
OUT_OF_STOCK = "out of stock"
KEEP_ORDERS = 10_000
#: The demo gateway's API key for placing orders (printed by ``meshkit demo``; a demo, not a secret).
DEMO_API_KEY = "demo-key-0123456789abcdef"


def gateway_config(registry: str, port: int) -> str:
    """The demo gateway's config: orders and stock over HTTP, placing orders needs the API key."""
    return f"""
[gateway]
port = {port}
registry = "{registry}"
services = ["meshkit.demo.services:Order", "meshkit.demo.services:Inventory"]
title = "meshkit demo shop"

[[routes]]
method = "POST"
path = "/api/orders"
call = "order.place"
body = "order"
status = 201
scopes = ["orders:write"]
summary = "Place an order (reserves stock in inventory)"

[[routes]]
method = "GET"
path = "/api/orders/{{order_id}}"
call = "order.get"
public = true
summary = "An order placed by the order service"

[[routes]]
method = "GET"
path = "/api/stock/{{sku}}"
call = "inventory.stock_of"
public = true
summary = "Stock left of a SKU (on one inventory instance)"

[auth]
api_keys = [{{ name = "demo", key = "{DEMO_API_KEY}", scopes = ["orders:write"] }}]

[limits]
per_ip = {{ rate = 5000, burst = 5000 }}
"""


def client_middleware() -> list[Any]:
    """The order service's client chain: traces (when the process exports them) and call
    metrics (on the process's /metrics)."""
    from meshkit.observe import default_chain

    return default_chain("client", access_log=False)


#: The order service's policy for its calls to inventory (see docs/resilience.md).
DEMO_POLICY = PolicyConfig(
    shedding=Shedding(enabled=False),
    client={
        "inventory.*": ClientRule(
            instance_breaker=Breaker(window=2, min_calls=5, error_ratio=0.5, slow_ratio=0.5, slow_call=0.1, open_for=3),
            breaker=Breaker(min_calls=20, error_ratio=0.8, open_for=3),
            retry=Retry(max_attempts=2),
        )
    },
)


class Inventory(Service, name="inventory"):
    """Keeps stock per SKU; an order for more than is left is refused as out of stock.
    $MESHKIT_DEMO_STOCK sets the starting stock (default 1000). With $MESHKIT_DEMO_COORD (a
    lock URL: the demo gives its registry's) the inventories elect one of them to run the restock
    job (meshkit.demo.restock), which tops every inventory up under a lock with a fencing token;
    without it, an inventory restocks itself when it runs out."""

    def __init__(self) -> None:
        initial = int(os.environ.get("MESHKIT_DEMO_STOCK", "1000"))
        if initial < 1:
            raise ValueError(f"MESHKIT_DEMO_STOCK must be at least 1, got {initial}")
        self.stock = dict.fromkeys(SKUS, initial)
        self.restock = max(1, initial // 2)
        self.name = f"inventory-{os.getpid()}"
        self.latency = float(os.environ.get("MESHKIT_DEMO_INVENTORY_LATENCY", "0.0005"))
        self.mode = "ok"
        self.fence = 0  # the highest restock token seen: a lower one is a stale job's
        self.job: RestockJob | None = None
        coord = os.environ.get("MESHKIT_DEMO_COORD")
        if coord:
            self.job = RestockJob(self.name, coord)
            self._job_task = asyncio.get_running_loop().create_task(self.job.run())

    @rpc
    async def receive(self, token: int) -> dict[str, int]:
        """The truck: top up every SKU below half its starting stock; ``token`` is the restock
        lock's fencing token, and one lower than a token seen before is refused."""
        if token < self.fence:
            raise RpcError(StatusCode.FAILED_PRECONDITION, f"stale restock token {token} (seen {self.fence})")
        self.fence = token
        for sku, left in self.stock.items():
            if left < self.restock:
                self.stock[sku] = left + self.restock
        return dict(self.stock)

    @rpc
    async def chaos(self, mode: str) -> str:
        """The demo's fault switch: "ok", "slow" (+250 ms a call) or "failing" (INTERNAL errors)."""
        if mode not in ("ok", "slow", "failing"):
            raise RpcError(StatusCode.INVALID_ARGUMENT, f"mode is ok, slow or failing; got {mode!r}")
        self.mode = mode
        return f"{self.name} is now {mode}"

    @rpc
    async def reserve(self, sku: str, qty: int) -> Reservation:
        if qty <= 0:
            raise RpcError(StatusCode.INVALID_ARGUMENT, f"qty must be positive, got {qty}")
        if sku not in self.stock:
            raise RpcError(StatusCode.NOT_FOUND, f"unknown sku {sku!r}")
        if self.mode == "failing":
            raise RpcError(StatusCode.INTERNAL, f"{self.name} is failing (demo fault)")
        if self.mode == "slow":
            await asyncio.sleep(0.25)
        if self.latency:
            await asyncio.sleep(random.expovariate(1 / self.latency))
        if self.stock[sku] < qty:
            if self.job is None:
                self.stock[sku] += self.restock  # no restock job: the truck arrives at once
            raise RpcError(StatusCode.FAILED_PRECONDITION, f"{sku} is {OUT_OF_STOCK}")
        self.stock[sku] -= qty
        return Reservation(sku, qty, self.stock[sku], self.name)

    @rpc
    async def stock_of(self, sku: str) -> int:
        if sku not in self.stock:
            raise RpcError(StatusCode.NOT_FOUND, f"unknown sku {sku!r}")
        return self.stock[sku]


class Order(Service, name="order"):
    """Places orders by reserving stock in ``inventory``, found through $INVENTORY_REGISTRY (a
    registry URL) or at $INVENTORY_TARGET (host:port list)."""

    def __init__(self) -> None:
        registry = os.environ.get("INVENTORY_REGISTRY")
        # A breaker per inventory instance takes a failing or slow one out of rotation (and
        # probes it back in); the method breaker and retries guard the service as a whole.
        policy = Policy(DEMO_POLICY)
        if registry:
            # Round-robin, not p2c, so that the demo shows the breakers at work: p2c would already
            # steer most calls away from a failing or slow instance by itself.
            client = Client(
                registry=registry, middleware=client_middleware(), balancer="round_robin", policy=policy, caller="order"
            )
        else:
            target = os.environ.get("INVENTORY_TARGET", "127.0.0.1:7001")
            client = Client(target=target, middleware=client_middleware(), policy=policy, caller="order")
        self.inventory = client.proxy(Inventory)
        self.next_id = 0
        self.placed: dict[int, OrderResult] = {}

    @rpc
    async def place(self, order: OrderRequest) -> OrderResult:
        reservation = await self.inventory.reserve(order.sku, order.qty)
        self.next_id += 1
        result = OrderResult(self.next_id, order.sku, order.qty, reservation.left, reservation.served_by)
        self.placed[result.order_id] = result
        self.placed.pop(result.order_id - KEEP_ORDERS, None)  # the demo runs for hours: keep the last ones
        return result

    @rpc(idempotent=True)
    async def get(self, order_id: int) -> OrderResult:
        """An order placed by this instance (the last 10,000)."""
        found = self.placed.get(order_id)
        if found is None:
            raise RpcError(StatusCode.NOT_FOUND, f"no order {order_id} (this instance keeps the last {KEEP_ORDERS})")
        return found
