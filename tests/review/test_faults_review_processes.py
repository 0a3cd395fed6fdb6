"""Review of meshkit.testing.processes: bugs pinned as strict xfails."""

from __future__ import annotations

import sys
import time

import pytest

from meshkit.testing.processes import _child


def test_start_timeout_bounds_a_silent_child() -> None:
    cmd = [sys.executable, "-c", "import time; time.sleep(4)"]
    start = time.monotonic()
    with pytest.raises(RuntimeError), _child(cmd, "never printed", None, None, 0.3):
        pass
    assert time.monotonic() - start < 2.0, "start_timeout=0.3 s was not honoured"
