"""``ConfigStore(url)``: a versioned key-value store with watch, on the engine ``url`` names.

A backend (:mod:`meshkit.config.backend`) stores, compares-and-sets and watches. Here, the same
for all: keys, prefixes, values and revisions are checked first (:mod:`meshkit.config.keys`), so
every engine refuses the same requests; text is stored as UTF-8; ``rollback`` writes an old
revision's value again as a new revision (history is never rewritten).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import TracebackType

from meshkit.config.backend import Change, Changes, ConfigBackend, Entry, Listing
from meshkit.config.keys import MAX_VALUE, check_key, check_prefix, check_revision, check_value
from meshkit.errors import BadConfigRequest
from meshkit.schemes import SchemeTable

#: The entry point group a distribution declares its configuration backends in (name = scheme).
CONFIGS_GROUP = "meshkit.configs"

config_backends: SchemeTable[ConfigBackend] = SchemeTable(
    "config store",
    CONFIGS_GROUP,
    {
        "memory": "meshkit.config.memory:open_memory",
        "file": "meshkit.config.file:open_file",
        "meshkit": "meshkit.config.builtin:open_builtin",
        "etcd": "meshkit.config.etcd:open_etcd",
        "zk": "meshkit.config.zk:open_zk",
    },
    ("get", "put", "delete", "list", "watch", "history", "close"),
)


class ConfigStore:
    """Versioned configuration on ``memory://[space]``, ``file:///dir``, ``meshkit://HOST:PORT``,
    ``etcd://HOST:PORT[/prefix]`` or ``zk://HOST:PORT[/root]`` (see
    docs/configuration.md for what each backend guarantees)."""

    def __init__(self, url: str, *, backend: ConfigBackend | None = None, max_value: int = MAX_VALUE) -> None:
        self.url = url
        if backend is None:
            try:
                backend = config_backends.open(url)
            except BadConfigRequest:
                raise
            except ValueError as exc:  # an unknown scheme, a malformed URL
                raise BadConfigRequest(str(exc)) from None
        #: The engine's backend (``backend=``: one made already, say a wrapper in a test).
        self.backend: ConfigBackend = backend
        self.max_value = max_value

    async def get(self, key: str) -> Entry | None:
        """The key's value and revision, or None if it does not exist."""
        return await self.backend.get(check_key(key))

    async def put(self, key: str, value: bytes | str, *, expect: int | None = None) -> int:
        """Write ``value`` (str is stored as UTF-8); returns the store's new revision.
        ``expect=REV``: only if the key is at revision REV now (0: only if it does not exist),
        else :class:`~meshkit.errors.Conflict` and nothing is written."""
        key = check_key(key)
        data = check_value(key, value, self.max_value)
        return await self.backend.put(key, data, check_revision("expect", expect))

    async def delete(self, key: str, *, expect: int | None = None) -> int | None:
        """Delete the key; the revision of the deletion, or None if it did not exist."""
        return await self.backend.delete(check_key(key), check_revision("expect", expect))

    async def list(self, prefix: str = "") -> Listing:
        """The entries under ``prefix`` and the revision they are as of."""
        return await self.backend.list(check_prefix(prefix))

    async def watch(self, prefix: str = "", *, since: int | None = None) -> AsyncIterator[Change]:
        """Every change under ``prefix`` after revision ``since`` (None: after the current one),
        in order, none lost and none twice, for as long as the caller iterates."""
        prefix = check_prefix(prefix)
        start = check_revision("since", since)
        if start is None:
            start = (await self.backend.list(prefix)).revision
        async for change in self.backend.watch(prefix, start):
            yield change

    async def history(self, key: str) -> Changes:
        """Every change of ``key`` the store keeps, oldest first (deletions have value None)."""
        return await self.backend.history(check_key(key))

    async def rollback(self, key: str, *, to: int) -> int | None:
        """Make the key what it was at revision ``to`` again, as a new revision (returned; None if
        it was deleted then and is absent now: nothing to write); the history keeps everything in
        between. Conflict if the key changed while this ran."""
        key = check_key(key)
        target = check_revision("to", to, allow_none=False)
        assert target is not None
        history = await self.backend.history(key)
        past = [c for c in history if c.revision <= target]
        if not past:
            raise BadConfigRequest(f"config key {key!r} has no revision at or before {to} to roll back to")
        then = past[-1]
        current = history[-1].revision if history and not history[-1].deleted else 0
        if then.value is None:
            return await self.backend.delete(key, current)  # None: absent already, nothing to do
        return await self.backend.put(key, then.value, current)

    async def close(self) -> None:
        await self.backend.close()

    async def __aenter__(self) -> ConfigStore:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
