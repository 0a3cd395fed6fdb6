"""Services the gateway tests route to."""

from __future__ import annotations

import msgspec

from meshkit import RpcError, Service, StatusCode, current_context, rpc


class Order(msgspec.Struct):
    id: int
    item: str
    quantity: int = 1
    tags: list[str] = []


class Orders(Service, name="orders"):
    def __init__(self) -> None:
        self.orders: dict[int, Order] = {1: Order(1, "apple", 2)}

    @rpc
    async def get(self, order_id: int) -> Order:
        order = self.orders.get(order_id)
        if order is None:
            raise RpcError(StatusCode.NOT_FOUND, f"no order {order_id}")
        return order

    @rpc
    async def place(self, item: str, quantity: int = 1, tags: list[str] | None = None) -> Order:
        if quantity <= 0:
            raise RpcError(StatusCode.INVALID_ARGUMENT, "quantity must be > 0")
        order = Order(max(self.orders) + 1, item, quantity, tags or [])
        self.orders[order.id] = order
        return order

    @rpc
    async def search(self, item: str, limit: int = 10, tags: list[str] | None = None) -> list[Order]:
        found = [o for o in self.orders.values() if o.item == item]
        return found[:limit]

    @rpc
    async def whoami(self) -> dict[str, str | None]:
        ctx = current_context()
        assert ctx is not None
        md = ctx.metadata
        return {
            k: md.get(k) for k in ("auth-subject", "auth-scopes", "auth-method", "request-id", "x-tenant", "x-user")
        }  # type: ignore[misc]

    @rpc
    async def fail(self, code: int) -> None:
        raise RpcError(StatusCode(code), f"failing with {StatusCode(code).name}")
