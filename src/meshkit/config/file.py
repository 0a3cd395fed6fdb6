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
import uuid
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


def _unusable(message: str) -> ConfigUnavailable:
    """The store's directory or journal cannot be used. Marked (``details.reason = "store"``) so
    that a meshkit:// client of a registry keeping its store here tells this apart from the
    registry being unreachable."""
    error = ConfigUnavailable(message)
    error.details = {"reason": "store"}
    return error


def _encode(change: Change) -> bytes:
    value = None if change.value is None else base64.b64encode(change.value).decode()
    return (
        json.dumps({"rev": change.revision, "key": change.key, "value": value}, separators=(",", ":")).encode() + b"\n"
    )


def _decode(line: bytes, where: str) -> Change:
    try:
        record = json.loads(line)
        value, key = record["value"], record["key"]
        if not isinstance(key, str):
            raise TypeError(f"key {key!r} is not text")
        return Change(key, None if value is None else base64.b64decode(value, validate=True), int(record["rev"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise _unusable(f"the config journal {where} has a line that is not a revision ({exc}): {line[:80]!r}") from exc


def _store_id(path: Path) -> str:
    """The id in ``path``, written there first (exclusively: two first openers agree) if absent."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return path.read_text().strip()
    try:
        os.write(fd, uuid.uuid4().hex.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    return path.read_text().strip()


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
            #: Which store this is, made once with the directory (a copy of it is the same store).
            self.store_id = _store_id(self.directory / "store-id")
        except OSError as exc:
            raise _unusable(f"cannot use {self.directory} as a config store: {exc}") from exc

    # -- the journal (run in a worker thread) -------------------------------------------------
    def _catch_up(self, *, locked: bool) -> None:
        """Replay what was appended since we last looked (whole lines only). ``locked``: the caller
        holds the directory's flock, so a line that does not decode is corruption; without it, a
        bad line at the very end may be one a writer is truncating and rewriting right now (a
        crashed writer's torn line), so it is left for the next look."""
        try:
            with open(self._journal, "rb") as journal:
                size = os.fstat(journal.fileno()).st_size
                if size < self._offset:
                    raise _unusable(
                        f"the config journal {self._journal} is shorter ({size} bytes) than what this process "
                        f"has read of it ({self._offset}): it was truncated or replaced; open the store again"
                    )
                journal.seek(self._offset)
                data = journal.read()
        except FileNotFoundError:
            return
        end = data.rfind(b"\n") + 1  # a line without its newline is still being written (or was cut short)
        lines = data[:end].splitlines(keepends=True)
        for number, line in enumerate(lines):
            try:
                change = _decode(line.rstrip(b"\n"), str(self._journal))
            except ConfigUnavailable:
                if not locked and number == len(lines) - 1:
                    return  # perhaps being rewritten: look again next time
                raise
            if change.revision <= self.log.revision:
                raise _unusable(
                    f"the config journal {self._journal} has revision {change.revision} after "
                    f"{self.log.revision}: it is corrupt (two writers without the lock?)"
                )
            self.log.apply(change)
            self._offset += len(line)

    def _read(self, read: Callable[[RevisionLog], T]) -> T:
        """``read(log)`` on the log caught up with the journal, under this process's mutex (so a
        writer's thread never changes the log while it is read)."""
        with self._mutex:
            self._catch_up(locked=False)
            return read(self.log)

    def _locked_write(self, plan: Callable[[RevisionLog], Change | None]) -> Change | None:
        """Under the directory's lock: catch up, decide with ``plan(log)``, append, fsync. The flock
        is taken before this process's mutex, so reads here never wait on another process."""
        with open(self._lock_path, "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                with self._mutex:
                    self._catch_up(locked=True)
                    change = plan(self.log)
                    if change is None:
                        return None
                    self._append(_encode(change))
                    self.log.apply(change)
                    return change
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _append(self, line: bytes) -> None:
        """Write ``line`` at the journal's end and fsync it; if anything fails on the way the
        journal is cut back to where it was, so a write reported as failed never lands."""
        created = not self._journal.exists()
        fd = os.open(self._journal, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            os.ftruncate(fd, self._offset)  # drop a line a crashed writer left unfinished
            try:
                os.lseek(fd, self._offset, os.SEEK_SET)
                view = memoryview(line)
                while view:  # a short write (a full disk) goes on, or raises
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            except BaseException:
                os.ftruncate(fd, self._offset)
                os.fsync(fd)
                raise
        finally:
            os.close(fd)
        if created:  # the journal's own name must survive a power loss too
            directory = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        self._offset += len(line)

    async def _run(self, work: Callable[..., T], *args: object) -> T:
        try:
            return await asyncio.to_thread(work, *args)
        except OSError as exc:
            raise _unusable(f"the config store {self.directory} cannot be used: {exc}") from exc

    async def _write(self, plan: Callable[[RevisionLog], Change | None]) -> Change | None:
        """A write in a worker thread. It cannot be called back once started: if the caller is
        cancelled it still completes, and this process's watchers are woken all the same."""
        work = asyncio.ensure_future(self._run(self._locked_write, plan))
        work.add_done_callback(lambda _: self._wake())
        return await asyncio.shield(work)

    def _wake(self) -> None:
        for event in self._watchers:
            event.set()

    # -- the backend -------------------------------------------------------------------------
    async def get(self, key: str) -> Entry | None:
        return await self._run(self._read, lambda log: log.get(key))

    async def put(self, key: str, value: bytes, expect: int | None) -> int:
        change = await self._write(lambda log: log.plan_put(key, value, expect))
        assert change is not None  # a put always writes (or raises Conflict)
        return change.revision

    async def delete(self, key: str, expect: int | None) -> int | None:
        change = await self._write(lambda log: log.plan_delete(key, expect))
        return None if change is None else change.revision

    async def list(self, prefix: str) -> Listing:
        return await self._run(self._read, lambda log: log.list(prefix))

    async def watch(self, prefix: str, since: int) -> AsyncIterator[Change]:
        woken = asyncio.Event()
        self._watchers.add(woken)
        try:
            seen = since
            while True:
                woken.clear()
                for change in await self._run(self._read, lambda log, after=seen: log.since(prefix, after)):
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
        return await self._run(self._read, lambda log: log.history(key))

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
