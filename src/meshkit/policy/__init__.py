"""Resilience policies over RPC: rate limits, bulkheads, shedding, breakers, retries, hedging,
fallbacks and runtime switches. The algorithms are pure (``meshkit.resilience``); this package
holds the thin asyncio shells and the config that picks them."""

from meshkit.policy.config import Breaker, ClientRule, Limit, PolicyConfig, PolicyError, Retry, ServerRule, Shedding
from meshkit.policy.runtime import Policy
from meshkit.policy.switches import Switches, process_switches

__all__ = [
    "Breaker",
    "ClientRule",
    "Limit",
    "Policy",
    "PolicyConfig",
    "PolicyError",
    "Retry",
    "ServerRule",
    "Shedding",
    "Switches",
    "process_switches",
]
