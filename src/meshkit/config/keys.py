"""What a configuration key, prefix, value and revision may be: checked before any backend sees
them, so every engine refuses the same requests with the same message.

A key is a path of ``/``-separated segments (``policy/order``): printable, no spaces, no empty
segment, no leading or trailing ``/``, at most :data:`MAX_KEY_LENGTH` characters. ZooKeeper maps
segments to znodes and etcd to a key under the store's prefix, so the rule is the strictest of
them. A prefix is matched as a string (``policy/`` matches ``policy/order``; ``""`` matches all).
A value is bytes (text is encoded as UTF-8) of at most the store's ``max_value`` bytes, checked
before anything is written: etcd refuses requests over 1.5 MiB and ZooKeeper nodes over 1 MB.
"""

from __future__ import annotations

from meshkit.errors import BadConfigRequest, StatusCode

MAX_KEY_LENGTH = 256
#: The default limit of a value, in bytes (``ConfigStore(url, max_value=...)`` changes it).
MAX_VALUE = 512 * 1024


def check_key(key: object) -> str:
    if not isinstance(key, str):
        raise BadConfigRequest(f"a config key is a str, got {type(key).__name__}")
    if not key:
        raise BadConfigRequest("a config key must not be empty")
    if len(key) > MAX_KEY_LENGTH:
        raise BadConfigRequest(f"config key of {len(key)} characters is over the limit of {MAX_KEY_LENGTH}")
    if not key.isprintable() or any(c.isspace() for c in key):
        raise BadConfigRequest(f"config key {key!r} has a space or an unprintable character")
    if key.startswith("/") or key.endswith("/") or "//" in key:
        raise BadConfigRequest(f"config key {key!r}: segments are separated by one '/', with none at either end")
    return key


def check_prefix(prefix: object) -> str:
    if not isinstance(prefix, str):
        raise BadConfigRequest(f"a config prefix is a str, got {type(prefix).__name__}")
    if prefix and (len(prefix) > MAX_KEY_LENGTH or not prefix.isprintable() or any(c.isspace() for c in prefix)):
        raise BadConfigRequest(f"config prefix {prefix!r} is not the beginning of a key")
    return prefix


def check_value(key: str, value: object, limit: int) -> bytes:
    if isinstance(value, str):
        value = value.encode()
    elif isinstance(value, bytearray | memoryview):
        value = bytes(value)
    if not isinstance(value, bytes):
        raise BadConfigRequest(f"the value of config key {key!r} is bytes or str, got {type(value).__name__}")
    if len(value) > limit:
        raise BadConfigRequest(
            f"the value of config key {key!r} is {len(value):,} bytes, over the store's limit of {limit:,}",
            code=StatusCode.RESOURCE_EXHAUSTED,
        )
    return value


def check_revision(what: str, revision: object, *, allow_none: bool = True) -> int | None:
    if revision is None and allow_none:
        return None
    if isinstance(revision, bool) or not isinstance(revision, int) or revision < 0:
        raise BadConfigRequest(f"{what} is a revision (an int >= 0), got {revision!r}")
    return revision
