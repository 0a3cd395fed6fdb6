"""Versioned configuration with watch (issue 16): ``ConfigStore(url)`` on memory or a directory.

    from meshkit.config import ConfigStore, Conflict
    store = ConfigStore("file:///var/lib/myapp/config")     # or memory://
    rev = await store.put("policy/order", text, expect=0)    # expect=REV: compare-and-set
    entry = await store.get("policy/order")                  # Entry(key, value, revision) or None
    async for change in store.watch("policy/", since=rev): ...

See docs/configuration.md.
"""

from meshkit.config.backend import Change, ConfigBackend, Entry, Listing
from meshkit.config.live import LivePolicy, open_live_policy, split_policy_url
from meshkit.config.release import Identity
from meshkit.config.store import CONFIGS_GROUP, ConfigStore, config_backends
from meshkit.errors import BadConfigRequest, Compacted, ConfigError, ConfigUnavailable, Conflict
from meshkit.rpc import hooks as _hooks

# policy="etcd://…#policy/order" in Server, Client and meshkit run: a live policy.
_hooks.register_policy_loader(open_live_policy, schemes=config_backends.schemes())

__all__ = [
    "CONFIGS_GROUP",
    "BadConfigRequest",
    "Change",
    "Compacted",
    "ConfigBackend",
    "ConfigError",
    "ConfigStore",
    "ConfigUnavailable",
    "Conflict",
    "Entry",
    "Identity",
    "Listing",
    "LivePolicy",
    "config_backends",
    "open_live_policy",
    "split_policy_url",
]
