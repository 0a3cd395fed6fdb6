"""meshkit: an asyncio microservice framework with service governance built in."""

# Tracing joins the default middleware chains once the process configures it (observe/defaults.py).
import meshkit.observe.defaults

# Governance plugs into rpc's hooks when imported (the loader of policy="path.toml", breaker
# status): rpc no longer imports it, so meshkit does, before anyone builds a Server or Client.
import meshkit.policy

# The built-in registry declares its meshkit:// scheme in discovery's table (a reference: cheap).
import meshkit.registry  # noqa: F401
from meshkit.errors import MeshkitError, ProtocolError, RpcError, StatusCode
from meshkit.protocol.keepalive import KeepaliveConfig
from meshkit.protocol.limits import Limits
from meshkit.rpc import hooks as _hooks
from meshkit.rpc.client import Client
from meshkit.rpc.context import Context, current_context
from meshkit.rpc.middleware import Call, Handler, Middleware
from meshkit.rpc.server import Server
from meshkit.rpc.service import Service, rpc


def _live_policy(url: str) -> object:
    from meshkit.config.live import open_live_policy

    return open_live_policy(url)


# policy="etcd://…#key" (a live policy from a configuration store) plugs into the same hooks, as
# a reference: meshkit.config is imported when a URL policy is first made, not by every process
# (importing it cost every client call ~1,500 instructions with a full policy: a bigger heap).
_hooks.register_policy_loader(_live_policy, schemes=("*",))

__version__ = "0.1.0"

__all__ = [
    "Call",
    "Client",
    "Context",
    "Handler",
    "KeepaliveConfig",
    "Limits",
    "MeshkitError",
    "Middleware",
    "ProtocolError",
    "RpcError",
    "Server",
    "Service",
    "StatusCode",
    "__version__",
    "current_context",
    "rpc",
]
