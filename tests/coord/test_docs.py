"""docs/coordination.md's first example runs as written (on memory://, the one engine every
machine has; the real engines run the same calls in their own test modules)."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

DOC = (Path(__file__).resolve().parents[2] / "docs" / "coordination.md").read_text()


async def test_the_first_example_runs_on_memory() -> None:
    block = re.search(r"```python\n(.*?)```", DOC, re.S)
    assert block is not None
    code = block.group(1)
    code = re.sub(r'Locks\("[^"]+"\)', 'Locks("memory://docs")', code)
    code = re.sub(r'Election\("[^"]+"', 'Election("memory://docs"', code)
    code = code.replace("async for leader in election.observe(): ...", "await anext(election.observe().__aiter__())")
    namespace: dict[str, object] = {}
    body = "async def example():\n    written = []\n    async def write_stock(token):\n        written.append(token)\n"
    body += textwrap.indent(code, "    ") + "    return held, written\n"
    exec(compile(body, "docs/coordination.md", "exec"), namespace)
    held, written = await namespace["example"]()  # type: ignore[operator]
    assert written == [1]  # the body ran with the first grant's token
    assert held.name == "report"
