from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.observe.otlp_receiver import OtlpReceiver


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    """A real OTLP/HTTP receiver on a free loopback port, in its own thread."""
    r = OtlpReceiver()
    r.start()
    yield r
    r.stop()
