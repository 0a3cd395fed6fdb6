"""docs/configuration.md's API example runs as written, on memory:// (the file:// backend runs the
same calls in test_file_store.py)."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

DOC = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()


async def test_the_api_example_runs_on_memory() -> None:
    block = re.search(r"```python\n(.*?)```", DOC, re.S)
    assert block is not None
    code = re.sub(r'ConfigStore\("[^"]+"\)', 'ConfigStore("memory://docs")', block.group(1))
    code = code.replace("    conflict.current", "    found = conflict.current")  # the except block's name goes
    namespace: dict[str, object] = {}
    body = "async def example():\n" + textwrap.indent(code, "    ") + "    return entry, found, change, history\n"
    exec(compile(body, "docs/configuration.md", "exec"), namespace)
    entry, found, change, history = await namespace["example"]()  # type: ignore[operator]
    assert entry.text == "limit = 100"
    assert found == entry.revision
    assert [c.value for c in history] == [b"limit = 100", b"limit = 50"]
    assert change.revision > history[-1].revision  # the watch saw what came after the listing


def test_every_policy_in_the_doc_is_one_the_loader_takes() -> None:
    from meshkit.policy.config import parse

    blocks = re.findall(r"```toml\n(.*?)```", DOC, re.S)
    assert len(blocks) >= 2  # the dry-run rules and the gray release
    for block in blocks:
        parse(block.encode(), "docs/configuration.md")


def test_the_policy_urls_in_the_doc_split_into_a_store_and_a_key() -> None:
    from meshkit.config import split_policy_url

    urls = set(re.findall(r"""policy[= ]"?((?:etcd|meshkit|file|zk|memory)://[^\s"`)]+)""", DOC))
    assert len(urls) >= 2, urls
    for url in urls:
        store, key = split_policy_url(url)
        assert key and store.split("://")[0] == url.split("://")[0], url
