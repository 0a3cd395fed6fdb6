"""Which revision of a live policy an instance runs: the pure part of a gray release.

A live policy is one key of a configuration store (``policy/order``). A gray revision is the
candidate kept beside it at ``policy/order/gray``: a whole policy plus a ``[release]`` table
naming who runs it (:class:`~meshkit.policy.config.Release`). Each instance runs the gray
revision when the table picks it, else the key's own revision; promoting the gray revision
(``meshkit config promote``) writes it to the key and deletes ``/gray``, so everyone converges.

An instance is picked by its :class:`Identity`: its id, zone or labels, or a percentage picked
by a hash of the id and the key, so the same instances are picked each time (and a bigger
percentage keeps the ones a smaller one picked).
"""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field

from meshkit.errors import BadConfigRequest
from meshkit.policy.config import Release

#: Where a key's gray revision lives, and where instances report what they run.
GRAY = "gray"
STATUS_ROOT = "_status"


def gray_key(key: str) -> str:
    return f"{key}/{GRAY}"


def status_prefix(key: str) -> str:
    return f"{STATUS_ROOT}/{key}/"


def status_key(key: str, instance: str) -> str:
    """The key an instance reports its applied revision at (its id made one key segment)."""
    return status_prefix(key) + "".join(
        c if c.isprintable() and not c.isspace() and c != "/" else "_" for c in instance
    )


@dataclass(frozen=True, slots=True)
class Identity:
    """Who this instance is, for a gray release: ``instance`` (unique: host:pid by default),
    ``zone`` and ``labels``."""

    instance: str
    zone: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, instance: str | None = None) -> Identity:
        """``$MESHKIT_INSTANCE_ID`` (else host:pid), ``$MESHKIT_ZONE`` and ``$MESHKIT_LABELS``
        (``k=v,k=v``)."""
        env = os.environ
        return cls(
            instance or env.get("MESHKIT_INSTANCE_ID") or f"{socket.gethostname()}:{os.getpid()}",
            env.get("MESHKIT_ZONE") or None,
            parse_labels(env.get("MESHKIT_LABELS", "")),
        )


def parse_labels(text: str) -> dict[str, str]:
    labels: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, eq, value = item.partition("=")
        if not eq or not name.strip():
            raise BadConfigRequest(f"labels are name=value pairs separated by commas, got {item!r}")
        labels[name.strip()] = value.strip()
    return labels


def share(key: str, instance: str) -> float:
    """Where ``instance`` falls in 0..100 for ``key``: stable, and spread evenly."""
    digest = hashlib.blake2b(f"{key}\x00{instance}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % 10_000 / 100


def picks(release: Release | None, who: Identity, key: str) -> bool:
    """Whether ``release`` picks ``who`` to run the gray revision of ``key`` (no table: nobody)."""
    if release is None:
        return False
    if who.instance in release.instances:
        return True
    if who.zone is not None and who.zone in release.zones:
        return True
    if release.labels and all(who.labels.get(k) == v for k, v in release.labels.items()):
        return True
    return share(key, who.instance) < release.percent
