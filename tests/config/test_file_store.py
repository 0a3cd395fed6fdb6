"""file:///dir keeps the store contract, between stores of one process and between processes."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from meshkit.config import BadConfigRequest, ConfigStore, ConfigUnavailable
from meshkit.errors import StatusCode
from meshkit.testing import spawn
from tests.config.contract import ConfigContract
from tests.helpers import CHILD_PYTHONPATH


class TestFileStore(ConfigContract):
    @pytest.fixture(autouse=True)
    def directory(self, tmp_path: Path) -> None:
        self.url = f"file://{tmp_path / 'store'}?poll=0.01"

    def open(self) -> ConfigStore:
        return ConfigStore(self.url)


WRITER = """
import asyncio, sys
from meshkit.config import ConfigStore, Conflict

async def main(url, times):
    conflicts = 0
    async with ConfigStore(url) as store:
        for _ in range(times):
            while True:
                entry = await store.get("counter")
                try:
                    await store.put("counter", str(int(entry.text) + 1), expect=entry.revision)
                    break
                except Conflict:
                    conflicts += 1
    print("conflicts", conflicts)

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


async def test_compare_and_set_between_processes_has_one_winner_per_revision(tmp_path: Path) -> None:
    url = f"file://{tmp_path / 'store'}"
    async with ConfigStore(url) as store:
        await store.put("counter", "0", expect=0)
        writers = [
            spawn([sys.executable, "-c", WRITER, url, "100"], env={"PYTHONPATH": CHILD_PYTHONPATH}, name=f"writer {i}")
            for i in range(3)
        ]
        try:
            codes = await asyncio.gather(*(asyncio.to_thread(w.wait, 120) for w in writers))
        finally:
            for writer in writers:
                writer.stop()
        assert codes == [0, 0, 0], [w.tail() for w in writers]
        entry = await store.get("counter")
        assert entry is not None and entry.text == "300", "an update was lost"
        history = await store.history("counter")
        assert [int(c.value or b"") for c in history] == list(range(301)), "one winner per revision"
        assert [c.revision for c in history] == list(range(1, 302)), "revisions are consecutive"


async def test_a_line_cut_short_by_a_crash_is_never_read_and_the_next_writer_drops_it(tmp_path: Path) -> None:
    directory = tmp_path / "store"
    async with ConfigStore(f"file://{directory}") as store:
        first = await store.put("policy", "limit = 1")
    with open(directory / "journal", "ab") as journal:
        journal.write(b'{"rev":2,"key":"policy","value":"bGltaXQgPSA')  # a writer died mid-line
    async with ConfigStore(f"file://{directory}") as reader:
        entry = await reader.get("policy")
        assert entry is not None and (entry.text, entry.revision) == ("limit = 1", first)
        second = await reader.put("policy", "limit = 2")
        assert second == first + 1
    async with ConfigStore(f"file://{directory}") as later:
        assert [c.value for c in await later.history("policy")] == [b"limit = 1", b"limit = 2"]
    lines = (directory / "journal").read_bytes().splitlines()
    assert len(lines) == 2 and all(line.endswith(b"}") for line in lines)


async def test_a_store_opened_again_has_every_revision(tmp_path: Path) -> None:
    url = f"file://{tmp_path / 'store'}"
    async with ConfigStore(url) as store:
        revisions = [await store.put(f"k{i}", str(i)) for i in range(5)]
        await store.delete("k0")
    async with ConfigStore(url) as again:
        listing = await again.list()
        assert [e.key for e in listing] == ["k1", "k2", "k3", "k4"]
        assert listing.revision == revisions[-1] + 1
        assert [c.deleted for c in await again.history("k0")] == [False, True]


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("file://somehost/dir", "on this host"),
        ("file:///", "name the store's directory"),
        ("file:///tmp/x?poll=0", "poll is seconds above 0"),
        ("file:///tmp/x?poll=soon", "poll must be a number"),
        ("file:///tmp/x?color=red", "unknown option color"),
    ],
)
def test_a_bad_file_url_is_refused_naming_what_is_wrong(url: str, says: str) -> None:
    with pytest.raises(BadConfigRequest) as refused:
        ConfigStore(url)
    assert says in refused.value.message and refused.value.code == StatusCode.INVALID_ARGUMENT


async def test_a_write_whose_fsync_fails_is_cut_back_and_never_lands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import meshkit.config.file as file_backend

    async with ConfigStore(f"file://{tmp_path / 'store'}") as store:
        first = await store.put("k", "1")
        real_fsync, calls = file_backend.os.fsync, []

        def failing_fsync(fd: int) -> None:
            calls.append(fd)
            if len(calls) == 1:
                raise OSError(5, "Input/output error")
            real_fsync(fd)

        monkeypatch.setattr(file_backend.os, "fsync", failing_fsync)
        with pytest.raises(ConfigUnavailable, match="Input/output error"):
            await store.put("k", "2", expect=first)
        monkeypatch.setattr(file_backend.os, "fsync", real_fsync)
    async with ConfigStore(f"file://{tmp_path / 'store'}") as again:  # what the journal says
        entry = await again.get("k")
        assert entry is not None and (entry.text, entry.revision) == ("1", first), "the failed write landed"
        assert await again.put("k", "2", expect=first) == first + 1


async def test_a_journal_with_a_revision_out_of_order_is_reported_corrupt(tmp_path: Path) -> None:
    directory = tmp_path / "store"
    async with ConfigStore(f"file://{directory}") as store:
        await store.put("a", "1")
    line = (directory / "journal").read_bytes()
    (directory / "journal").write_bytes(line + line.replace(b'"a"', b'"b"'))  # revision 1 twice
    async with ConfigStore(f"file://{directory}") as reader:
        with pytest.raises(ConfigUnavailable, match="is corrupt"):
            await reader.put("c", "3")
