"""The access log: one structured line per call (service, method, peer, status, duration, request id).

Written to the ``meshkit.access`` logger (``meshkit.access.client`` on the caller), so it costs one
level check per call while that logger is off, and a handler with a JSON formatter gets the fields
as attributes of the record (``record.meshkit``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from typing import Any

from meshkit.errors import RpcError, StatusCode
from meshkit.rpc.middleware import Call, Handler, Middleware

_INFO = logging.INFO


def access_log(logger_name: str = "meshkit.access") -> Middleware:
    logger = logging.getLogger(logger_name)
    is_enabled = logger.isEnabledFor
    clock = time.perf_counter

    def middleware(next_handler: Handler) -> Handler:
        def handler(call: Call) -> Awaitable[Any]:
            # A plain function: with the logger off it hands back the next handler's awaitable
            # itself, so the default chain costs no extra coroutine per call.
            if not is_enabled(_INFO):
                return next_handler(call)
            return logged(call)

        async def logged(call: Call) -> Any:
            start = clock()
            status = StatusCode.OK
            try:
                return await next_handler(call)
            except RpcError as exc:
                status = exc.code
                raise
            except BaseException as exc:
                status = StatusCode.CANCELLED if isinstance(exc, asyncio.CancelledError) else StatusCode.UNKNOWN
                raise
            finally:
                duration_ms = (clock() - start) * 1000
                fields = {
                    "service": call.spec.service,
                    "method": call.spec.name,
                    "peer": call.peer,
                    "status": status.name,
                    "duration_ms": round(duration_ms, 3),
                    "request_id": call.metadata.get("request-id"),
                }
                logger.info(
                    "%s.%s peer=%s status=%s duration_ms=%.3f request_id=%s",
                    call.spec.service,
                    call.spec.name,
                    call.peer,
                    status.name,
                    duration_ms,
                    fields["request_id"],
                    extra={"meshkit": fields},
                )

        return handler

    return middleware
