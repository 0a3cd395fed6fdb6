"""The per-method state a guard builds from its policy's rules (server plans, client stages and
the chains made of them), in a dict a policy can hold weakly: :meth:`Policy.apply` reaches every
live one to drop what a new config changes, and a closed client's chains go with the client."""

from __future__ import annotations

from typing import Any


class Cache(dict[str, Any]):
    """qualname -> what a guard built for it."""

    __slots__ = ("__weakref__",)

    # Held in a WeakSet: by identity (a dict's equality is its contents, and dicts are unhashable).
    __hash__ = object.__hash__  # type: ignore[assignment]

    def __eq__(self, other: object) -> bool:
        return self is other
