"""``module:Class`` names of services, resolved as a person at a shell expects.

``meshkit run mysvc:Counter`` and a gateway config's ``services = ["mysvc:Counter"]`` both name
a class in a file beside the user, and the ``meshkit`` console script (unlike ``python -m``)
does not put the working directory on ``sys.path``: this module does, once, for both, so the
same name means the same class to every command.
"""

from __future__ import annotations

import importlib
import os
import sys

from meshkit.rpc.service import Service

__all__ = ["ServiceImportError", "import_service"]


class ServiceImportError(ValueError):
    """A ``module:Class`` name that does not lead to a meshkit Service; the message names the
    module, what was wrong, and the working directory it was looked for in."""

    def __init__(self, spec: str, message: str, cwd: str) -> None:
        super().__init__(message)
        self.spec = spec
        self.cwd = cwd


def import_service(spec: str) -> type[Service] | Service:
    """The Service class (or instance) ``package.module:Name`` names, importing the module from
    the working directory first, then ``sys.path``. Raises :class:`ServiceImportError`."""
    cwd = os.getcwd()
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ServiceImportError(spec, f"expected MODULE:Class, got {spec!r}", cwd)
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        if isinstance(exc, ModuleNotFoundError) and exc.name is not None and _is_part_of(exc.name, module_name):
            why = f"no module named {exc.name!r} in the working directory {cwd} nor on sys.path"
        else:  # the module exists but failed to import something of its own
            why = f"importing module {module_name!r} failed: {exc} (working directory {cwd})"
        raise ServiceImportError(spec, f"cannot import {spec!r}: {why}", cwd) from None
    except SyntaxError as exc:
        raise ServiceImportError(
            spec, f"cannot import {spec!r}: module {module_name!r} has a syntax error: {exc}", cwd
        ) from None
    obj = getattr(module, attr, None)
    if obj is None:
        where = getattr(module, "__file__", None) or module_name
        raise ServiceImportError(spec, f"cannot import {spec!r}: module {module_name!r} ({where}) has no {attr!r}", cwd)
    if (isinstance(obj, type) and issubclass(obj, Service)) or isinstance(obj, Service):
        return obj
    raise ServiceImportError(spec, f"{spec!r} is not a meshkit Service class", cwd)


def _is_part_of(missing: str, module_name: str) -> bool:
    """Whether the module not found is ``module_name`` or one of its parent packages."""
    return module_name == missing or module_name.startswith(missing + ".")
