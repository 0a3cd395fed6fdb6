"""The API gateway: one HTTP entry in front of meshkit services (docs/gateway.md)."""

from meshkit.gateway.app import GatewayApp
from meshkit.gateway.config import GatewayConfig, GatewayConfigError, load, parse
from meshkit.gateway.server import GatewayBindError, GatewayServer, app_from_file

__all__ = [
    "GatewayApp",
    "GatewayBindError",
    "GatewayConfig",
    "GatewayConfigError",
    "GatewayServer",
    "app_from_file",
    "load",
    "parse",
]
