"""The built-in registry: server (``meshkit registry``) and client backend (``meshkit://``)."""

from meshkit.registry.backend import BuiltinRegistry
from meshkit.registry.service import RegistryService
from meshkit.registry.state import RegistryState

__all__ = ["BuiltinRegistry", "RegistryService", "RegistryState"]
