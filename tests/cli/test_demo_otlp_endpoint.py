"""``meshkit demo --otlp URL``: the URL reaches the demo's processes ahead of any
OTEL_EXPORTER_OTLP_TRACES_ENDPOINT already set, and the demo leaves its own environment as it was."""

from __future__ import annotations

import os

import pytest


async def test_demo_otlp_endpoint_wins_and_leaves_the_environment_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    from meshkit.demo import runner
    from meshkit.observe import tracing

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://elsewhere.invalid:4318/v1/traces")
    saved = dict(os.environ)
    seen: list[str] = []

    def fake_spawn(name: str, args: list[str], env: dict[str, str] | None = None, timeout: float = 15.0) -> None:
        # The child's OTLP exporter resolves its endpoint from os.environ plus ``env``.
        with monkeypatch.context() as m:
            for key, value in (env or {}).items():
                m.setenv(key, value)
            seen.append(OTLPSpanExporter()._endpoint)
        raise RuntimeError("stop the demo here")

    monkeypatch.setattr(runner, "_spawn", fake_spawn)
    monkeypatch.setattr(tracing, "configure", lambda *a, **k: None)  # no global provider in the test process
    try:
        with pytest.raises(RuntimeError, match="stop the demo here"):
            await runner._main(1.0, 1, 1.0, None, None, otlp="http://collector.test:4318")  # type: ignore[arg-type]
        changed = {k: v for k, v in os.environ.items() if saved.get(k) != v}
    finally:
        os.environ.clear()
        os.environ.update(saved)
    assert seen and seen[0].startswith("http://collector.test:4318"), seen
    assert changed == {}, changed
