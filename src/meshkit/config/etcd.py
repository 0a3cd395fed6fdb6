"""``etcd://h1:2379,h2:2379[/prefix]``: configuration on etcd, with etcd's own revisions.

Every key is stored at ``{prefix}/{key}`` (prefix ``/meshkit/config`` unless the URL's path says
otherwise), and every revision is etcd's: an :class:`~meshkit.config.backend.Entry`'s revision is
the key's ``mod_revision``, a listing's is the response header's. etcd's revision counter is the
whole cluster's, so two revisions of this store may have other writes (of other prefixes) between
them: revisions grow, but not one by one. Through etcd's JSON gateway (:mod:`meshkit.discovery.etcd_http`):

- **Compare-and-set** is one transaction comparing the key's ``mod_revision`` (0 for a missing
  key, as etcd reports one) with ``expect``; if it fails, the same transaction reads the key, so
  :class:`~meshkit.errors.Conflict` names the revision found.
- **Watch** is etcd's watch of the prefix from ``since + 1``. A watch whose stream breaks (a member
  died, the connection dropped) resumes from the last revision it delivered, on whichever member
  answers, pausing up to 2 s between attempts; one that asks for revisions etcd has compacted away
  raises :class:`~meshkit.errors.Compacted` (list again, watch from the listing's revision).
- **History** is etcd's own, read by watching the key from the oldest revision etcd keeps. A watch
  does not say when it has delivered the past, so ``history`` first writes a marker key right after
  the key (``{prefix}/{key}`` + ``"\\x00history"``, in the same watched range) and reads until the
  marker's event: everything before it is the key's past. The marker is one write per ``history``
  call and one hidden key per key whose history was read; keys holding ``\\x00`` cannot be made
  through meshkit, and ``list`` and ``watch`` never show them. What compaction removed is gone:
  history starts at the oldest revision etcd kept.

httpx is imported by the gateway helpers only: ``pip install meshkit[etcd]``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

from meshkit.config.backend import Change, Changes, Entry, Listing
from meshkit.discovery.etcd_http import (
    EtcdError,
    EtcdHTTP,
    EtcdUnreachable,
    b64,
    explain,
    prefix_end,
    unb64,
)
from meshkit.errors import BadConfigRequest, Compacted, ConfigUnavailable, Conflict, StatusCode
from meshkit.schemes import BackendURL

log = logging.getLogger("meshkit.config")
T = TypeVar("T")

DEFAULT_PREFIX = "/meshkit/config"
#: What follows a key's name in the name of its history marker (see the module docstring).
MARKER = "\x00history"
#: The longest pause between a broken watch's attempts to reach etcd again.
RESUME_MAX_PAUSE = 2.0


class EtcdConfig:
    """The configuration store under one prefix of one etcd cluster."""

    def __init__(self, endpoints: str, prefix: str = DEFAULT_PREFIX) -> None:
        self._etcd = EtcdHTTP(endpoints, what="etcd:// config")
        self._where = endpoints
        self._root = prefix.rstrip("/") or DEFAULT_PREFIX

    # -- the engine boundary ----------------------------------------------------------------
    def _unavailable(self, exc: EtcdError) -> Exception:
        if "compacted" in str(exc) and not isinstance(exc, EtcdUnreachable):
            return Compacted(f"etcd has compacted the revisions asked for ({exc}); list again and watch from there")
        message, refused = explain(exc, self._where, "config")
        return ConfigUnavailable(message, code=StatusCode.UNAUTHENTICATED) if refused else ConfigUnavailable(message)

    async def _call(self, request: Awaitable[T]) -> T:
        try:
            return await request
        except EtcdError as exc:
            raise self._unavailable(exc) from exc

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self._call(self._etcd.post(path, body))

    def _path(self, key: str) -> str:
        return f"{self._root}/{key}"

    def _key(self, path: bytes) -> str:
        return path.decode()[len(self._root) + 1 :]

    def _entry(self, kv: dict[str, Any]) -> Entry:
        return Entry(self._key(unb64(kv["key"])), unb64(kv.get("value", "")), int(kv["mod_revision"]))

    # -- reading -----------------------------------------------------------------------------
    async def get(self, key: str) -> Entry | None:
        found = await self._post("kv/range", {"key": b64(self._path(key))})
        kvs = found.get("kvs", [])
        return self._entry(kvs[0]) if kvs else None

    async def list(self, prefix: str) -> Listing:
        start = self._path(prefix)
        found = await self._post("kv/range", {"key": b64(start), "range_end": prefix_end(start)})
        entries = [self._entry(kv) for kv in found.get("kvs", []) if b"\x00" not in unb64(kv["key"])]
        return Listing(entries, int(found["header"]["revision"]))

    # -- writing -----------------------------------------------------------------------------
    async def _conditional(self, key: str, expect: int | None, request: dict[str, Any]) -> dict[str, Any]:
        """``request`` (a txn operation) if the key is at ``expect``; Conflict naming what it is at."""
        path = b64(self._path(key))
        body: dict[str, Any] = {"success": [request], "failure": [{"request_range": {"key": path}}]}
        if expect is not None:
            body["compare"] = [{"target": "MOD", "result": "EQUAL", "key": path, "mod_revision": expect}]
        answer = await self._post("kv/txn", body)
        if not answer.get("succeeded", False):
            kvs = answer["responses"][0]["response_range"].get("kvs", [])
            found = int(kvs[0]["mod_revision"]) if kvs else 0
            where = f"at revision {found}" if found else "absent"
            wanted = f"revision {expect}" if expect else "absent"
            raise Conflict(f"config key {key!r} is {where}, not {wanted} as expected", current=found)
        return answer

    async def put(self, key: str, value: bytes, expect: int | None) -> int:
        answer = await self._conditional(
            key, expect, {"request_put": {"key": b64(self._path(key)), "value": b64(value)}}
        )
        return int(answer["header"]["revision"])

    async def delete(self, key: str, expect: int | None) -> int | None:
        answer = await self._conditional(key, expect, {"request_delete_range": {"key": b64(self._path(key))}})
        deleted = int(answer["responses"][0]["response_delete_range"].get("deleted", 0))
        return int(answer["header"]["revision"]) if deleted else None

    # -- watching ----------------------------------------------------------------------------
    async def watch(self, prefix: str, since: int) -> AsyncIterator[Change]:
        start = self._path(prefix)
        seen = since
        pause = 0.05
        while True:
            body = {"create_request": {"key": b64(start), "range_end": prefix_end(start), "start_revision": seen + 1}}
            try:
                async with self._etcd.stream("watch", body) as messages:
                    async for result in messages:
                        if result.get("compact_revision"):  # etcd cancels a watch from before it
                            raise Compacted(
                                f"etcd has compacted revisions up to {result['compact_revision']} (asked for those "
                                f"after {seen}); list the prefix again and watch from the listing's revision"
                            )
                        if result.get("canceled"):
                            raise ConfigUnavailable(
                                f"etcd at {self._where} cancelled the watch of {prefix!r}: {result}"
                            )
                        pause = 0.05
                        for event in result.get("events", []):
                            kv = event["kv"]
                            path = unb64(kv["key"])
                            revision = int(kv["mod_revision"])
                            if revision <= seen:
                                continue  # delivered before the stream broke
                            seen = revision
                            if b"\x00" in path:
                                continue  # a history marker (see the module docstring)
                            deleted = event.get("type") == "DELETE"
                            yield Change(self._key(path), None if deleted else unb64(kv.get("value", "")), revision)
                raise EtcdUnreachable(f"etcd at {self._etcd.current} ended the watch")
            except EtcdUnreachable as exc:
                log.warning("config watch of %r lost etcd (%s); resuming after revision %d", prefix, exc, seen)
            except EtcdError as exc:
                raise self._unavailable(exc) from exc
            await asyncio.sleep(pause)
            pause = min(pause * 2, RESUME_MAX_PAUSE)
            try:  # find a member that answers, for the next stream
                await self._etcd.post("kv/range", {"key": b64(start), "limit": 1, "keys_only": True})
            except EtcdError:
                pass

    async def history(self, key: str) -> Changes:
        path = self._path(key)
        marker = path + MARKER
        written = await self._post("kv/put", {"key": b64(marker), "value": ""})
        until = int(written["header"]["revision"])
        changes: list[Change] = []
        start = 1
        while True:
            body = {
                "create_request": {"key": b64(path), "range_end": prefix_end(path + "\x00"), "start_revision": start}
            }
            try:
                async with self._etcd.stream("watch", body) as messages:
                    async for result in messages:
                        if result.get("compact_revision"):
                            start = int(result["compact_revision"])  # the past before it is gone
                            changes.clear()
                            break
                        for event in result.get("events", []):
                            kv = event["kv"]
                            revision = int(kv["mod_revision"])
                            if unb64(kv["key"]) == path.encode():
                                deleted = event.get("type") == "DELETE"
                                changes.append(Change(key, None if deleted else unb64(kv.get("value", "")), revision))
                            elif revision >= until:
                                return changes  # the marker: everything before it has been delivered
                    else:
                        raise EtcdUnreachable(f"etcd at {self._etcd.current} ended the watch of {key!r}'s history")
            except EtcdError as exc:
                raise self._unavailable(exc) from exc

    async def close(self) -> None:
        await self._etcd.aclose()


def open_etcd(url: BackendURL) -> EtcdConfig:
    """``etcd://h1:2379,h2:2379[/prefix]`` (prefix /meshkit/config)."""
    if not url.netloc:
        raise BadConfigRequest(f"URL {url.url!r}: etcd:// needs HOST:PORT of a member (etcd://127.0.0.1:2379)")
    if url.query:
        raise BadConfigRequest(f"URL {url.url!r}: etcd:// takes no options")
    try:
        return EtcdConfig(url.netloc, prefix=url.path or DEFAULT_PREFIX)
    except ValueError as exc:
        raise BadConfigRequest(f"URL {url.url!r}: {exc}") from None
