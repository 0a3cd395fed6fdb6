"""``file:///dir``: a configuration store in a directory, for one host (embedded, no server).

The directory holds ``journal``, one JSON line per revision (``{"rev": 7, "key": "policy/order",
"value": "<base64>"}``, ``"value": null`` for a deletion), and ``lock``, which writers hold
(``fcntl.flock``) while they append. Every process that opens the directory replays the journal
into a :class:`~meshkit.config.log.RevisionLog` and reads what others appended since, so:

- **Atomic, durable writes.** A writer takes the lock, catches up with the journal (another
  process may have written), checks ``expect`` against that, appends its one line and fsyncs it,
  then releases the lock. A revision is either in the journal whole or not at all: a line cut
  short by a crash (no newline at its end) is never read, and the next writer truncates it.
- **Compare-and-set across processes**, since the check and the append happen under the lock.
- **Watch** sees this process's writes at once and other processes' within ``?poll=`` seconds
  (default 0.05: the standard library has no portable file-change notification).

The journal only grows (every revision is kept, so ``history`` and ``rollback`` reach back to the
start); it is meant for configuration, a few writes a minute, not for data. File work runs in a
worker thread, so the event loop never waits on a disk.
"""

from __future__ import annotations

import asyncio
import base64
import fcntl
import json
import os
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TypeVar

from meshkit.config.backend import Change, Changes, Entry, Listing
from meshkit.config.log import RevisionLog
from meshkit.errors import BadConfigRequest, ConfigUnavailable
from meshkit.schemes import BackendURL

POLL = 0.05
T = TypeVar("T")
OPTIONS = ("poll",)


def _encode(change: Change) -> bytes:
    value = None if change.value is None else base64.b64encode(change.value).decode()
    return (
        json.dumps({"rev": change.revision, "key": change.key, "value": value}, separators=(",", ":")).encode() + b"\n"
    )


def _decode(line: bytes, where: str) -> Change:
    try:
        record = json.loads(line)
        value = record["value"]
        return Change(record["key"], None if value is None else base64.b64decode(value), int(record["rev"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigUnavailable(
            f"the config journal {where} has a line that is not a revision ({exc}): {line[:80]!r}"
        ) from exc


class FileConfig:
    """The configuration store of one directory."""

    def __init__(self, directory: str | Path, *, poll: float = POLL) -> None:
        self.directory = Path(directory)
        self.poll = poll
        self._journal = self.directory / "journal"
        self._lock_path = self.directory / "lock"
        self.log = RevisionLog()
        self._offset = 0  # bytes of the journal replayed so far (always at a line's end)
        self._mutex = threading.Lock()  # one catch-up or write at a time within this process
        self._watchers: set[asyncio.Event] = set()
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigUnavailable(f"cannot use {self.directory} as a config store: {exc}") from exc

    # -- the journal (run in a worker thread) -------------------------------------------------
    def _catch_up(self) -> bool:
        """Replay what was appended since we last looked (whole lines only); True if anything was."""
        try:
            with open(self._journal, "rb") as journal:
                journal.seek(self._offset)
                data = journal.read()
        except FileNotFoundError:
            return False
        end = data.rfind(b"\n") + 1  # a line without its newline is still being written (or was cut short)
        if end == 0:
            return False
        for line in data[:end].splitlines():
            change = _decode(line, str(self._journal))
            if change.revision > self.log.revision:
                self.log.apply(change)
        self._offset += end
        return True

    def _locked_write(self, plan: Callable[[RevisionLog], Change | None]) -> Change | None:
        """Under the directory's lock: catch up, decide with ``plan(log)``, append, fsync."""
        with self._mutex, open(self._lock_path, "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                self._catch_up()
                change = plan(self.log)
                if change is None:
                    return None
                fd = os.open(self._journal, os.O_WRONLY | os.O_CREAT, 0o644)
                try:
                    os.ftruncate(fd, self._offset)  # drop a line a crashed writer left unfinished
                    os.lseek(fd, self._offset, os.SEEK_SET)
                    line = _encode(change)
                    os.write(fd, line)
                    os.fsync(fd)
                finally:
                    os.close(fd)
                self.log.apply(change)
                self._offset += len(line)
                return change
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _read_fresh(self) -> None:
        with self._mutex:
            self._catch_up()

    async def _run(self, work: Callable[..., T], *args: object) -> T:
        try:
            return await asyncio.to_thread(work, *args)
        except OSError as exc:
            raise ConfigUnavailable(f"the config store {self.directory} cannot be used: {exc}") from exc

    def _wake(self) -> None:
        for event in self._watchers:
            event.set()

    # -- the backend -------------------------------------------------------------------------
    async def get(self, key: str) -> Entry | None:
        await self._run(self._read_fresh)
        return self.log.get(key)

    async def put(self, key: str, value: bytes, expect: int | None) -> int:
        change = await self._run(self._locked_write, lambda log: log.plan_put(key, value, expect))
        assert change is not None  # a put always writes (or raises Conflict)
        self._wake()
        return change.revision

    async def delete(self, key: str, expect: int | None) -> int | None:
        change = await self._run(self._locked_write, lambda log: log.plan_delete(key, expect))
        if change is None:
            return None
        self._wake()
        return change.revision

    async def list(self, prefix: str) -> Listing:
        await self._run(self._read_fresh)
        return self.log.list(prefix)

    async def watch(self, prefix: str, since: int) -> AsyncIterator[Change]:
        woken = asyncio.Event()
        self._watchers.add(woken)
        try:
            seen = since
            while True:
                woken.clear()
                await self._run(self._read_fresh)
                for change in self.log.since(prefix, seen):
                    seen = change.revision
                    yield change
                try:
                    async with asyncio.timeout(self.poll):
                        await woken.wait()
                except TimeoutError:
                    pass
        finally:
            self._watchers.discard(woken)

    async def history(self, key: str) -> Changes:
        await self._run(self._read_fresh)
        return self.log.history(key)

    async def close(self) -> None:
        pass


def open_file(url: BackendURL) -> FileConfig:
    """``file:///absolute/dir`` (``?poll=`` seconds between looks at other processes' writes)."""
    unknown = sorted(set(url.query) - set(OPTIONS))
    if unknown:
        raise BadConfigRequest(f"URL {url.url!r}: unknown option {', '.join(unknown)} (known: {', '.join(OPTIONS)})")
    if url.netloc not in ("", "localhost"):
        raise BadConfigRequest(f"URL {url.url!r}: a file:// store is on this host (file:///dir), not on {url.netloc!r}")
    if not url.path or url.path == "/":
        raise BadConfigRequest(f"URL {url.url!r}: name the store's directory, as file:///var/lib/myapp/config")
    try:
        poll = url.number("poll", POLL)
    except ValueError as exc:
        raise BadConfigRequest(str(exc)) from None
    if not poll > 0:
        raise BadConfigRequest(f"URL {url.url!r}: poll is seconds above 0, got {poll:g}")
    return FileConfig(url.path, poll=poll)
