"""The built-in registry: server (``meshkit registry``) and client backend (``meshkit://``).

This package declares the ``meshkit://`` scheme in discovery's table (discovery sits below rpc
and must not name a backend that speaks rpc). ``import meshkit`` imports this package, so the
scheme is known in every process, installed or run from a source checkout; the entry point in
pyproject.toml declares the same factory for tools that read metadata. The declaration is a
reference and the names below load on first use, so ``import meshkit`` pays for neither the
client backend nor the server here.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from meshkit.discovery.backends import register_backend

if TYPE_CHECKING:
    from meshkit.registry.backend import BuiltinRegistry
    from meshkit.registry.service import RegistryService
    from meshkit.registry.state import RegistryState

register_backend("meshkit", "meshkit.registry.backend:open_builtin")

__all__ = ["BuiltinRegistry", "RegistryService", "RegistryState"]

_WHERE = {
    "BuiltinRegistry": "meshkit.registry.backend",
    "RegistryService": "meshkit.registry.service",
    "RegistryState": "meshkit.registry.state",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'meshkit.registry' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
