"""The checks every lock request passes before it reaches an engine: name, TTL, wait.

One place, so that ``Locks("redis://…")`` and ``Locks("zk://…")`` refuse the same things with the
same words, and a backend may rely on what it gets: a name of 1 to :data:`MAX_NAME_LENGTH`
printable characters without spaces (backends escape it as their keys need), a finite TTL above
zero, and a wait that is None (for ever) or a finite number of seconds, 0 meaning "try once".
"""

from __future__ import annotations

import math
from typing import Any

from meshkit.errors import BadLockRequest

#: Longest lock or election name, in characters (a MariaDB key column and a ZooKeeper node name
#: take it with room for the prefix).
MAX_NAME_LENGTH = 200
#: Longest TTL: a lease that outlives a day is a configuration mistake, not a lock.
MAX_TTL = 86_400.0


def check_name(name: Any) -> str:
    if not isinstance(name, str):
        raise BadLockRequest(f"a lock name is a str, got {type(name).__name__}")
    if not name:
        raise BadLockRequest("a lock name must not be empty")
    if len(name) > MAX_NAME_LENGTH:
        raise BadLockRequest(f"lock name of {len(name)} characters is over the limit of {MAX_NAME_LENGTH}")
    if not name.isprintable() or any(c.isspace() for c in name):
        raise BadLockRequest(f"lock name {name!r} has a space or an unprintable character")
    return name


def check_ttl(ttl: Any) -> float:
    if isinstance(ttl, bool) or not isinstance(ttl, int | float):
        raise BadLockRequest(f"ttl is a number of seconds, got {ttl!r}")
    if not (math.isfinite(ttl) and 0 < ttl <= MAX_TTL):
        raise BadLockRequest(f"ttl must be above 0 and at most {MAX_TTL:g} seconds, got {ttl!r}")
    return float(ttl)


def check_wait(wait: Any) -> float | None:
    if wait is None:
        return None
    if isinstance(wait, bool) or not isinstance(wait, int | float):
        raise BadLockRequest(f"wait is None (for ever) or a number of seconds, got {wait!r}")
    if not (math.isfinite(wait) and wait >= 0):
        raise BadLockRequest(f"wait must be 0 (try once), a positive number of seconds or None, got {wait!r}")
    return float(wait)
