"""The Clients the gateway calls services through, and the policy they call with.

Made at startup (GatewayApp.startup) from ``gateway.registry`` (one Client for every routed
service) or ``targets`` (one Client per address); an app given its ``clients`` (tests,
embedding) makes none. Kept apart from the request path: nothing here runs per request.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from meshkit.gateway.config import GatewayConfig
from meshkit.policy import Breaker, ClientRule, Policy, PolicyConfig, PolicyError, Retry, Shedding
from meshkit.rpc.client import Client

#: The gateway's calls by default: a breaker per instance (a failing one leaves the rotation and
#: is probed back), retries of what was never processed or is idempotent, within a budget.
GATEWAY_POLICY = PolicyConfig(
    shedding=Shedding(enabled=False),
    client={"*": ClientRule(instance_breaker=Breaker(), retry=Retry())},
)


def gateway_policy(config: GatewayConfig, base: Path) -> Policy:
    """The policy of the gateway's calls: the config's ``policy`` file, else GATEWAY_POLICY."""
    path = config.gateway.policy
    if path is None:
        return Policy(GATEWAY_POLICY)
    try:
        return Policy.from_file(base / path)
    except PolicyError as exc:
        raise ValueError(f"gateway.policy: {exc}") from None


def make_clients(
    config: GatewayConfig, middleware: list[Any] | None, policy: Policy, own: list[Client]
) -> dict[str, Client]:
    """A Client per routed service; each one made is appended to ``own`` (to close at shutdown)."""
    gw = config.gateway
    clients: dict[str, Client] = {}
    if gw.registry is not None:
        shared = Client(registry=gw.registry, caller="gateway", middleware=middleware, policy=policy)
        own.append(shared)
        for route in config.routes:
            clients[route.service] = shared
    by_address: dict[str, Client] = {}
    for service, address in config.targets.items():
        client = by_address.get(address)
        if client is None:
            client = by_address[address] = Client(
                target=address, caller="gateway", middleware=middleware, policy=policy
            )
            own.append(client)
        clients[service] = client
    return clients
