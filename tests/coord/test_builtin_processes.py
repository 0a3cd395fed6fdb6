"""meshkit:// between real processes: the process contract against a `meshkit registry` process."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

from meshkit.testing import spawn
from tests.coord.process_contract import ProcessContract
from tests.helpers import CHILD_PYTHONPATH


class TestBuiltinProcesses(ProcessContract):
    ttl = 1.0  # the registry's event-loop clock, to the millisecond

    @pytest.fixture(autouse=True)
    def _registry(self) -> Iterator[None]:
        with spawn(
            [sys.executable, "-m", "meshkit", "registry", "--port", "0"],
            ready=r"registry serving on (\S+)",
            env={"PYTHONPATH": CHILD_PYTHONPATH},
            name="registry",
        ) as registry:
            self.url = f"meshkit://{registry.ready_match[1]}"  # type: ignore[index]
            yield
