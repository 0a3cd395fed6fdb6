"""The access log: one structured line per call (service, method, peer, status, duration, and
the request id when the call has one).

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

from meshkit.errors import DEADLINE_CANCEL_MESSAGE, RpcError, StatusCode
from meshkit.protocol.metadata import REQUEST_ID
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
            except asyncio.CancelledError as exc:
                # A server cancels a handler whose deadline passed and answers DEADLINE_EXCEEDED.
                expired = exc.args == (DEADLINE_CANCEL_MESSAGE,)
                status = StatusCode.DEADLINE_EXCEEDED if expired else StatusCode.CANCELLED
                raise
            except BaseException:
                status = StatusCode.UNKNOWN
                raise
            finally:
                duration_ms = (clock() - start) * 1000
                fields: dict[str, Any] = {
                    "service": call.spec.service,
                    "method": call.spec.name,
                    "peer": call.peer,
                    "status": status.name,
                    "duration_ms": round(duration_ms, 3),
                }
                request_id = call.metadata.get(REQUEST_ID)
                if request_id is None:
                    logger.info(
                        "%s.%s peer=%s status=%s duration_ms=%.3f",
                        call.spec.service,
                        call.spec.name,
                        call.peer,
                        status.name,
                        duration_ms,
                        extra={"meshkit": fields},
                    )
                else:
                    fields["request_id"] = request_id
                    logger.info(
                        "%s.%s peer=%s status=%s duration_ms=%.3f request_id=%s",
                        call.spec.service,
                        call.spec.name,
                        call.peer,
                        status.name,
                        duration_ms,
                        request_id,
                        extra={"meshkit": fields},
                    )

        return handler

    return middleware
