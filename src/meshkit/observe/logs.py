"""Structured logs: one JSON object per line, carrying the trace and span ids of the call being
handled, so that one trace id finds every line of a request in every process.

``meshkit run --log-format json`` installs it on the root logger; in code,
``logging.getLogger().handlers[0].setFormatter(JsonFormatter())``. The access log's fields
(``record.meshkit``: service, method, peer, status, duration_ms, request_id) become keys.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from meshkit.observe.tracing import current_ids


class TraceIds(logging.Filter):
    """Stamps each record with the ids of the span current where it was logged (a handler may
    format it later, elsewhere: a queue, a test's capture). Install it on the handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "trace_id"):
            ids = current_ids()
            record.trace_id, record.span_id = ids if ids is not None else (None, None)
        return True


def install(handler: logging.Handler) -> None:
    """JSON lines with trace ids on ``handler``."""
    handler.addFilter(TraceIds())
    handler.setFormatter(JsonFormatter())


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        ids = (record.trace_id, getattr(record, "span_id", None)) if hasattr(record, "trace_id") else current_ids()
        if ids is not None and ids[0] is not None:
            out["trace_id"], out["span_id"] = ids
        fields = getattr(record, "meshkit", None)
        if isinstance(fields, dict):
            for key, value in fields.items():
                out.setdefault(key, value)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)
