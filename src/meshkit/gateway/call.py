"""Steps 8 and 9 of a request: the call, and its answer.

The call goes through a meshkit ``Client`` (balancing, breakers, retries, deadline) with the
caller's identity in metadata (``auth-subject``, ``auth-scopes``, ``auth-method``) set here and
only here: no request header reaches metadata unless ``gateway.forward_headers`` names it. The
answer is the result as JSON with the route's status, or the call's status mapped to HTTP
(mapping.HTTP_STATUS) as ``{"code", "message", "request_id"}``; a service's own failure (5xx) is
told to the log, and the caller gets a fixed message.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import msgspec

from meshkit.errors import RpcError
from meshkit.gateway.asgi import Refusal, Send, answer, challenge, error
from meshkit.gateway.auth import Identity
from meshkit.gateway.config import MAX_FORWARDED_VALUE, Route
from meshkit.gateway.mapping import HTTP_STATUS
from meshkit.protocol.metadata import REQUEST_ID
from meshkit.rpc.client import Client

log = logging.getLogger("meshkit.gateway")

_json_encode = msgspec.json.Encoder().encode

_SERVER_SIDE = {
    500: "the service failed; the gateway's log has the details (by request id)",
    501: "the service does not implement this call",
    503: "the service is unavailable; try again later",
    504: "the service did not answer in time",
}


def call_metadata(
    forward: dict[bytes, str], headers: list[tuple[bytes, bytes]], identity: Identity | None, request_id: str
) -> dict[str, str | int | float | bool | None]:
    """The call's metadata: the request id, the headers ``forward`` names (raw lower-case name
    to metadata key), and the caller's identity."""
    metadata: dict[str, str | int | float | bool | None] = {REQUEST_ID: request_id}
    if forward:
        for name, value in headers:
            key = forward.get(name)
            if key is not None and key not in metadata:
                if len(value) > MAX_FORWARDED_VALUE:
                    raise Refusal(431, "INVALID_ARGUMENT", f"header {key} is over {MAX_FORWARDED_VALUE} bytes")
                try:
                    metadata[key] = value.decode("ascii")
                except UnicodeDecodeError:
                    raise Refusal(400, "INVALID_ARGUMENT", f"header {key} is not ASCII") from None
    if identity is not None:  # set last: nothing from the request can stand in for them
        metadata["auth-subject"] = identity.subject
        metadata["auth-scopes"] = " ".join(sorted(identity.scopes))
        metadata["auth-method"] = identity.method
    return metadata


async def call_and_answer(
    send: Send,
    *,
    client: Client,
    route: Route,
    args: Any,
    metadata: dict[str, str | int | float | bool | None],
    timeout: float,
    method: str,
    request_id: str,
    out_headers: list[tuple[bytes, bytes]],
    label: str,
) -> int:
    """Make the call and answer it; the HTTP status answered."""
    try:
        result = await client.call(route.service, route.rpc_method, args, timeout=timeout, metadata=metadata)
    except RpcError as exc:
        status = HTTP_STATUS.get(exc.code, 500)
        extra = list(out_headers)
        wait = exc.details.get("retry_after") if isinstance(exc.details, dict) else None
        if status in (429, 503) and isinstance(wait, int | float) and 0 <= wait < 86_400:
            extra.append((b"retry-after", str(max(1, math.ceil(wait))).encode()))
        if status == 401:
            extra += challenge(401)
        message = exc.message
        if status >= 500:
            # A service's failure is told to the log, not to whoever sent the request: messages
            # of errors nobody raised on purpose hold exception text, addresses, OS errors.
            log.warning("request %s: %s answered %s: %s", request_id, route.call, exc.code.name, exc.message)
            message = _SERVER_SIDE.get(status, "the service failed")
        await error(send, status, exc.code.name, message, request_id, extra)
        return status
    try:
        payload = _json_encode(result)
    except (TypeError, ValueError, OverflowError) as exc:
        log.error("result of %s is not JSON-encodable: %s", route.call, exc)
        raise Refusal(
            502, "INTERNAL", f"the result of {route.call} cannot be encoded as JSON", template=label
        ) from None
    if route.status == 204:
        await answer(send, 204, b"", out_headers, no_body=True)
    else:
        await answer(send, route.status, payload, out_headers, json_body=True, head=method == "HEAD")
    return route.status
