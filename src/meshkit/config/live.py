"""``LivePolicy``: a :class:`~meshkit.policy.Policy` that follows one key of a configuration
store, so rate limits, breakers, retries, shedding and switches change on every instance
without a restart. ``Server(policy="etcd://…/meshkit/config/policy/order")``,
``Client(policy=URL)`` and ``meshkit run --policy URL`` make one.

What happens to a new revision, in order:

1. **Chosen**: the key's revision, or its gray revision (``KEY/gray``) if that one's
   ``[release]`` table picks this instance (:mod:`meshkit.config.release`).
2. **Validated** by the policy loader's own checks (TOML, unknown fields, negative rates,
   method patterns) and by what this process needs (a Redis URL for shared limits). An invalid
   revision is **rejected**: its error is logged with the file-and-field message, counted
   (``meshkit_policy_config_rejections_total``), shown by ``meshkit config status``, and the
   last good revision keeps running.
3. **Applied** (:meth:`Policy.apply`: the rules that changed start afresh, the rest keep their
   state), **cached** on disk (:mod:`meshkit.config.cache`), and **reported**: the admin
   service's ``status``, ``meshkit_policy_revision`` in ``/metrics``, and a status key in the
   store that ``meshkit config status`` lists.

Started while the center is unreachable, a server runs the cached revision and says so (and
refuses to start if there is none: running with no limits at all must be a choice, not an
accident); it catches up as soon as the center answers. A deleted key keeps the last revision
running (an empty policy is written as one, explicitly).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import msgspec

from meshkit.config.cache import RevisionCache, default_cache_dir
from meshkit.config.keys import check_key
from meshkit.config.release import Identity, gray_key, picks, status_key
from meshkit.config.store import ConfigStore, config_backends
from meshkit.errors import BadConfigRequest, Compacted, ConfigError, ConfigUnavailable, Conflict, StatusCode
from meshkit.policy.config import PolicyConfig, PolicyError, check_runnable, parse
from meshkit.policy.runtime import Policy

log = logging.getLogger("meshkit.config")

#: How long an instance waits before writing its status report, so that reports (writes to the
#: store, which wake every watcher on some engines) do not compete with a change propagating,
#: and a burst of changes makes one report.
REPORT_DELAY = 0.25
#: How long ``start()`` waits for the center's first answer before running the cached revision.
FIRST_ANSWER = 3.0
#: Between attempts to reach an unreachable center: doubling from the first to the last.
RETRY_FIRST, RETRY_MAX = 0.1, 2.0
#: Where etcd keeps configuration unless the URL names another prefix (config/etcd.py's default).
_DEFAULT_ROOTS = {"etcd": "/meshkit/config", "zk": "/meshkit/config"}


def split_policy_url(url: str) -> tuple[str, str]:
    """A live policy URL as (store URL, key). The key follows ``#``
    (``file:///srv/config#policy/order``, ``etcd://h:2379/myprefix#policy/order``); without one,
    ``meshkit://`` and ``memory://`` read the path as the key (``meshkit://h:7000/policy/order``)
    and ``etcd://``/``zk://`` the path below the default prefix
    (``etcd://h:2379/meshkit/config/policy/order``)."""
    parts = urlsplit(url)
    if not parts.scheme or "://" not in url:
        raise BadConfigRequest(f"{url!r} is not a configuration URL (scheme://…#key)")
    known = config_backends.schemes()
    if parts.scheme not in known:
        raise BadConfigRequest(
            f"policy {url!r}: no configuration store has scheme {parts.scheme}:// "
            f"(known: {', '.join(f'{k}://' for k in known)}; a policy file is a path, without a scheme)"
        )
    root = _DEFAULT_ROOTS.get(parts.scheme)
    if parts.fragment:
        key, store = parts.fragment, urlunsplit(parts._replace(fragment=""))
    elif parts.scheme in ("meshkit", "memory") and parts.path.strip("/"):
        key, store = parts.path.strip("/"), urlunsplit(parts._replace(path=""))
    elif root is not None and parts.path.startswith(root + "/"):
        key = parts.path[len(root) + 1 :]
        store = urlunsplit(parts._replace(path=""))
    else:
        base = urlunsplit(parts._replace(path="", query="", fragment=""))
        if root:
            hint = f"{base}{root}/policy/order or {url}#policy/order"
        elif parts.scheme == "file":
            hint = f"{base}/DIR#policy/order, where /DIR is the store's directory"
        else:
            hint = f"{url}#policy/order"
        raise BadConfigRequest(f"policy URL {url!r} names no key: as {hint}")
    return store, check_key(key)


class LivePolicy(Policy):
    """A policy that runs the newest valid revision of ``url``'s key (see the module docstring).

    ``identity``: who this instance is for gray releases (default: ``Identity.from_env()``);
    ``cache_dir``: where the applied revision is kept (default: ``default_cache_dir()``; None
    for ``False``: no cache); ``store``: a ConfigStore made already (tests, or a shared one);
    ``report``: write this instance's status into the store (``meshkit config status``). The
    other keywords are :class:`Policy`'s.
    """

    def __init__(
        self,
        url: str,
        *,
        identity: Identity | None = None,
        cache_dir: str | Path | bool | None = None,
        store: ConfigStore | None = None,
        report: bool = True,
        report_delay: float = REPORT_DELAY,
        first_answer: float = FIRST_ANSWER,
        wall_clock: Callable[[], float] = time.time,
        **policy: Any,
    ) -> None:
        store_url, self.key = split_policy_url(url)
        super().__init__(PolicyConfig(), **policy)
        self.source = url if "@" not in url else store_url.split("://")[0] + "://…#" + self.key
        self.store = store if store is not None else ConfigStore(store_url)
        self._owns_store = store is None
        self.identity = identity or Identity.from_env()
        self.gray_key = gray_key(self.key)
        self.report = report
        self.first_answer = first_answer
        self.wall = wall_clock
        self.cache: RevisionCache | None = None
        if cache_dir is not False:
            directory = default_cache_dir() if cache_dir is None or cache_dir is True else Path(cache_dir)
            self.cache = RevisionCache(directory, store_url, self.key)
        #: What runs and how it got here (the admin status, ``meshkit config status``).
        self.gray = False
        self.cached = False
        self.reachable: bool | None = None  # None: not asked yet
        self.applied_at: float | None = None
        self.last_rejected: dict[str, Any] | None = None
        self._entries: dict[str, tuple[int, bytes]] = {}  # key or gray key -> (revision, value)
        #: What runs, and what was refused, by (revision, digest of the value): a store that
        #: restarted without its history reuses revision numbers for other values.
        self._running: tuple[int, bytes, bool] | None = None
        self._rejected: set[tuple[int, bytes]] = set()
        self._answered = asyncio.Event()
        self._follower: asyncio.Task[None] | None = None
        #: One writer of this instance's status key, so reports land in order (latest wins).
        self._reporter: asyncio.Task[None] | None = None
        self._report_due = False
        self._report_delay = report_delay
        self._writing = False
        self._load_cache()

    # -- start, stop -------------------------------------------------------------------------
    async def start(self) -> None:
        """Start following the key and wait (up to ``first_answer`` seconds) for the center's
        first answer; unanswered, run the cached revision, or raise ConfigUnavailable if none."""
        await super().start()
        try:
            self.follow()
            try:
                async with asyncio.timeout(self.first_answer):
                    await self._answered.wait()
            except TimeoutError:
                if self.revision is None:
                    where = f" and there is no cached revision in {self.cache.path}" if self.cache else ""
                    waited = f"{self.first_answer:g}s"
                    raise ConfigUnavailable(
                        f"policy {self.source}: the configuration center did not answer within {waited}{where}"
                    ) from None
                log.warning(
                    "policy %s: the configuration center is unreachable; running cached revision %d",
                    self.source,
                    self.revision,
                )
            if self.revision is None:  # the center answered, with nothing this process can run
                raise ConfigError(self._nothing_to_run(), code=StatusCode.FAILED_PRECONDITION)
        except BaseException:  # refused, or cancelled while waiting: nothing keeps running
            await self.stop()
            raise

    def _nothing_to_run(self) -> str:
        if self.last_rejected is not None:
            return (
                f"policy {self.source}: its only revision, {self.last_rejected['revision']}, is invalid "
                f"({self.last_rejected['error']}); put a valid policy there"
            )
        return (
            f"policy {self.source}: the store has no key {self.key!r} (a typo?); put a policy there first: "
            f"meshkit config put {self.key} policy.toml --store URL --policy (an empty file for no rules)"
        )

    def follow(self) -> None:
        """Start following in the background (idempotent); ``start`` does this and waits."""
        if self._follower is None or self._follower.done():
            self._follower = asyncio.get_running_loop().create_task(self._run())

    def client_middleware(self) -> Callable[[Any], Any]:
        # A client has no start: it follows from its first call (the cached revision until then).
        outer = super().client_middleware()

        def middleware(next_handler: Any) -> Any:
            with contextlib.suppress(RuntimeError):  # no loop: the chain is built outside one
                self.follow()
            return outer(next_handler)

        return middleware

    async def stop(self) -> None:
        await super().stop()
        if self._users > 0:
            return
        follower, self._follower = self._follower, None
        if follower is not None:
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower
        reporter, self._reporter = self._reporter, None
        if reporter is not None:
            if self._writing:  # let a report in flight land first, so the delete is the last word
                with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                    async with asyncio.timeout(1.0):
                        await asyncio.shield(reporter)
            reporter.cancel()  # one still waiting to be written: not needed any more
        if self.report and self.reachable:
            with contextlib.suppress(ConfigError, OSError, TimeoutError):
                async with asyncio.timeout(1.0):
                    await self.store.delete(status_key(self.key, self.identity.instance))
        if self._owns_store:
            await self.store.close()

    # -- following ---------------------------------------------------------------------------
    async def _run(self) -> None:
        delay = RETRY_FIRST
        while True:
            try:
                listing = await self.store.list(self.key)
                self._entries = {e.key: (e.revision, e.value) for e in listing if e.key in (self.key, self.gray_key)}
                self._reached()
                self._consider()
                self._answered.set()
                delay = RETRY_FIRST
                async for change in self.store.watch(self.key, since=listing.revision):
                    if change.key not in (self.key, self.gray_key):
                        continue
                    if change.value is None:
                        self._entries.pop(change.key, None)
                    else:
                        self._entries[change.key] = (change.revision, change.value)
                    self._consider()
            except asyncio.CancelledError:
                raise
            except Compacted:
                log.info("policy %s: the store lost revisions this watch had; listing again", self.source)
                continue  # list again: the listing's revision is one the store has
            except ConfigUnavailable as exc:
                if self.reachable is not False:
                    log.warning("policy %s: configuration center unreachable (%s); retrying", self.source, exc)
                self.reachable = False
            except Exception:
                log.exception("policy %s: following the key failed; retrying", self.source)
            await asyncio.sleep(delay)
            delay = min(RETRY_MAX, delay * 2)

    def _reached(self) -> None:
        if self.reachable is False:
            log.info("policy %s: configuration center reachable again", self.source)
        self.reachable = True

    def _consider(self) -> None:
        """Choose, validate and apply what this instance should run now."""
        chosen: tuple[int, bytes, bool] | None = None
        gray = self._entries.get(self.gray_key)
        if gray is not None:
            config = self._validated(gray[0], gray[1], self.gray_key)
            if config is not None and picks(config.release, self.identity, self.key):
                chosen = (gray[0], gray[1], True)
        main = self._entries.get(self.key)
        if chosen is None and main is not None:
            chosen = (main[0], main[1], False)
        if chosen is None:
            if self.revision is not None and not self.cached:
                log.warning("policy %s: the key is absent; revision %d keeps running", self.source, self.revision)
            elif self.revision is None:
                log.warning("policy %s: the store has no such key (yet)", self.source)
            return
        revision, value, is_gray = chosen
        if self._running == (revision, _digest(value), is_gray) and not self.cached:
            return
        config = self._validated(revision, value, self.gray_key if is_gray else self.key)
        if config is None:
            return
        self._apply(config, revision, value, is_gray, cached=False)

    def _validated(self, revision: int, value: bytes, key: str) -> PolicyConfig | None:
        if (revision, _digest(value)) in self._rejected:
            return None
        source = f"{key}@{revision}"
        try:
            config = parse(value, source)
            try:
                self.check(config)
            except PolicyError as exc:
                raise PolicyError(f"{source}: {exc}") from None
            return config
        except PolicyError as exc:
            self._rejected.add((revision, _digest(value)))
            self.actions["config_rejected"] += 1
            self.last_rejected = {"revision": revision, "key": key, "error": str(exc), "at": self.wall()}
            log.error(
                "policy %s: revision %d rejected, %s keeps running: %s",
                self.source,
                revision,
                "nothing" if self.revision is None else f"revision {self.revision}",
                exc,
            )
            self._report()
            return None

    def _apply(self, config: PolicyConfig, revision: int, value: bytes, gray: bool, *, cached: bool) -> None:
        changed = self.apply(config, revision)
        self._running = (revision, _digest(value), gray)
        self.gray, self.cached, self.applied_at = gray, cached, self.wall()
        if self.last_rejected is not None and self.last_rejected["revision"] < revision:
            self.last_rejected = None  # a later revision runs: the rejection is history
        if cached:  # loaded at construction: said at start only if the center does not answer
            log.debug("policy %s: cached revision %d loaded", self.source, revision)
            return
        log.info(
            "policy %s: running revision %d%s%s%s",
            self.source,
            revision,
            " (gray)" if gray else "",
            " from the local cache" if cached else "",
            f"; rules rebuilt: {', '.join(changed)}" if changed else "",
        )
        if not cached:
            if self.cache is not None:
                self.cache.write(revision, value, gray=gray)
            self._report()

    def _load_cache(self) -> None:
        if self.cache is None:
            return
        cached = self.cache.read()
        if cached is None:
            return
        try:
            config = parse(cached.value, f"{self.cache.path}")
            self.check(config)
        except PolicyError as exc:
            log.warning("policy %s: cached revision %d not usable: %s", self.source, cached.revision, exc)
            return
        self._apply(config, cached.revision, cached.value, cached.gray, cached=True)

    # -- reporting ---------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """What this instance runs: the admin status, ``meshkit config status`` (via the store)."""
        who = self.identity
        return {
            "instance": who.instance,
            "zone": who.zone,
            "labels": dict(who.labels),
            "key": self.key,
            "revision": self.revision,
            "gray": self.gray,
            "cached": self.cached,
            "reachable": self.reachable,
            "applied_at": self.applied_at,
            "rejected": self.last_rejected,
            "reported_at": self.wall(),
        }

    def snapshot(self) -> dict[str, Any]:
        state = super().snapshot()
        state["config"] = self.status()
        return state

    def _report(self) -> None:
        """Have the status key say what runs now (written by one task, so in order)."""
        if not self.report or self.reachable is not True:
            return
        self._report_due = True
        if self._reporter is None or self._reporter.done():
            try:
                self._reporter = asyncio.get_running_loop().create_task(self._write_status())
            except RuntimeError:
                return

    async def _write_status(self) -> None:
        while self._report_due:
            await asyncio.sleep(self._report_delay)
            self._report_due = False
            self._writing = True
            try:
                await self.store.put(status_key(self.key, self.identity.instance), msgspec.json.encode(self.status()))
            except (ConfigError, OSError) as exc:
                log.debug("policy %s: status not reported: %s", self.source, exc)
            finally:
                self._writing = False


class NothingToPromote(BadConfigRequest):
    """``promote`` found no gray revision (``meshkit config promote`` exits 1, as for a missing key)."""


def _digest(value: bytes) -> bytes:
    return hashlib.blake2b(value, digest_size=16).digest()


def open_live_policy(url: str) -> LivePolicy:
    """What ``policy="scheme://…"`` means in Server, Client and ``meshkit run``."""
    return LivePolicy(url)


async def promote(store: ConfigStore, key: str) -> tuple[int, int | None]:
    """Make ``key``'s gray revision everyone's: write its value to ``key`` (compare-and-set on
    the revision read, so a concurrent write is a Conflict, not lost), then delete ``KEY/gray``
    (only the revision promoted: a newer gray revision stays). Returns the key's new revision,
    and the revision of a newer gray revision that was kept (None when the gray key is gone)."""
    gray = await store.get(gray_key(key))
    if gray is None:
        raise NothingToPromote(f"config key {key!r} has no gray revision to promote ({gray_key(key)} is absent)")
    try:  # what every instance would refuse must not become everyone's revision
        check_runnable(parse(gray.value, f"{gray.key}@{gray.revision}"))
    except PolicyError as exc:
        raise BadConfigRequest(f"not promoted: {exc}") from None
    current = await store.get(key)
    revision = await store.put(key, gray.value, expect=current.revision if current is not None else 0)
    try:
        await store.delete(gray.key, expect=gray.revision)
    except Conflict as newer:
        return revision, newer.current
    return revision, None
