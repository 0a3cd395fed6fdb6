"""Resilience policies over RPC: rate limits, bulkheads, shedding, breakers, retries, hedging,
fallbacks and runtime switches. The algorithms are pure (``meshkit.resilience``); this package
holds the thin asyncio shells and the config that picks them."""

from meshkit.policy.config import Breaker, ClientRule, Limit, PolicyConfig, PolicyError, Retry, ServerRule, Shedding
from meshkit.policy.runtime import Policy, process_breakers
from meshkit.policy.switches import Switches, process_switches
from meshkit.rpc import hooks as _hooks

# rpc sits below governance and reaches it only through its hooks: plug in here, on import, what
# ``Server(policy="policy.toml")`` loads and where the admin service reads the breakers from.
_hooks.register_policy_loader(Policy.from_file)
_hooks.register_breaker_status(process_breakers)

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
