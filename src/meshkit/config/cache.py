"""The local copy of a live policy: the last revision this process applied, kept on disk so a
process started while the configuration center is unreachable runs it (and says so).

One small JSON file per (store, key), named by a hash of both (a store URL may hold a
password), written to a temporary file, fsynced and renamed over the old one, so a crash leaves
the previous copy or the new one, never half of either. A file that cannot be read or parsed is
reported and treated as absent: the process then needs the center, as it would with no cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import msgspec

log = logging.getLogger("meshkit.config")


def default_cache_dir() -> Path:
    """``$MESHKIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/meshkit/config`` (``~/.cache/...``)."""
    explicit = os.environ.get("MESHKIT_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "meshkit" / "config"


class CachedRevision(msgspec.Struct):
    key: str
    revision: int
    value: bytes
    gray: bool = False
    store: str = ""


@dataclass
class RevisionCache:
    """The cache file of ``key`` in ``store``, under ``directory``."""

    directory: Path
    store: str
    key: str

    @property
    def path(self) -> Path:
        digest = hashlib.sha256(f"{self.store}\x00{self.key}".encode()).hexdigest()[:24]
        return self.directory / f"{digest}.json"

    def read(self) -> CachedRevision | None:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("config cache %s cannot be read (%s): ignored", self.path, exc.strerror)
            return None
        try:
            cached = msgspec.json.decode(data, type=CachedRevision)
        except msgspec.DecodeError as exc:
            log.warning("config cache %s is damaged (%s): ignored", self.path, exc)
            return None
        if cached.key != self.key:
            log.warning("config cache %s holds key %r, not %r: ignored", self.path, cached.key, self.key)
            return None
        return cached

    def write(self, revision: int, value: bytes, *, gray: bool) -> None:
        """Keep ``value`` as the applied revision; a disk that refuses is logged, not raised (the
        process runs on, only without a copy to start from)."""
        record = CachedRevision(self.key, revision, value, gray, _without_password(self.store))
        tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as out:
                out.write(msgspec.json.encode(record))
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            log.warning("config cache %s not written (%s): a restart needs the center", self.path, exc.strerror)
            with contextlib.suppress(OSError):
                tmp.unlink()


def _without_password(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if "@" in rest.split("/", 1)[0]:
        rest = rest.split("@", 1)[1]
    return f"{scheme}{sep}{rest}"
