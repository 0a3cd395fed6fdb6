"""meshkit.coord: distributed locks with fencing tokens, and leader election.

::

    from meshkit.coord import Locks, Election, LockTimeout, LockLost

    locks = Locks("redis://127.0.0.1:6379/0")
    async with locks.lock("stock:apple", ttl=10.0, wait=5.0) as held:
        held.token   # the fencing token: grows with every grant of this name
        held.lost    # asyncio.Event, set if the lease could not be kept (the body is then cancelled)

    election = Election("etcd://127.0.0.1:2379", "scheduler", ttl=10.0)
    async with election.campaign("node-a") as term:
        ...          # leader until the block ends or term.lost is set

docs/coordination.md has every backend's guarantees, the fencing helpers and the CLI
(``meshkit lock``, ``meshkit elect``).
"""

from meshkit.coord.backend import ElectionBackend, Grant, Holder, LockBackend
from meshkit.coord.election import ELECTIONS_GROUP, Election, Term, election_backends
from meshkit.coord.locks import LOCKS_GROUP, Held, Locks, lock_backends
from meshkit.errors import (
    BadLockRequest,
    CoordinationError,
    EngineUnavailable,
    LockLost,
    LockTimeout,
    VersionConflict,
)

__all__ = [
    "ELECTIONS_GROUP",
    "LOCKS_GROUP",
    "BadLockRequest",
    "CoordinationError",
    "Election",
    "ElectionBackend",
    "EngineUnavailable",
    "Grant",
    "Held",
    "Holder",
    "LockBackend",
    "LockLost",
    "LockTimeout",
    "Locks",
    "Term",
    "VersionConflict",
    "election_backends",
    "lock_backends",
    "register_election_backend",
    "register_lock_backend",
]


def register_lock_backend(scheme: str, factory: object) -> None:
    """Declare the lock backend ``scheme://`` URLs open (a factory or a ``"module:attr"``)."""
    lock_backends.register(scheme, factory)  # type: ignore[arg-type]


def register_election_backend(scheme: str, factory: object) -> None:
    """Declare the election backend ``scheme://`` URLs open (a factory or a ``"module:attr"``)."""
    election_backends.register(scheme, factory)  # type: ignore[arg-type]
