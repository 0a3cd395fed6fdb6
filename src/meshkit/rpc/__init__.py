"""The RPC layer: services, server, client, context, middleware."""

from meshkit.rpc.client import Client
from meshkit.rpc.context import Context, current_context
from meshkit.rpc.middleware import Call, Handler, Middleware
from meshkit.rpc.server import Server
from meshkit.rpc.service import Service, rpc

__all__ = ["Call", "Client", "Context", "Handler", "Middleware", "Server", "Service", "current_context", "rpc"]
