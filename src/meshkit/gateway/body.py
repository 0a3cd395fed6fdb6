"""Step 6 of a request: its body, read within limits of size and time, and decoded.

A ``Content-Length`` over the limit is refused before a byte is read (413), a body that grows
past it while read too; a body that does not arrive within ``gateway.body_timeout`` is a 408
and the connection closes. Only the methods that take a body may have one, only JSON (415), and
it must decode (400). The mapping of the decoded body to arguments is mapping.ArgumentMapper's.
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec

from meshkit.gateway.asgi import Receive, Refusal, header

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_json_decode = msgspec.json.Decoder().decode


async def read_body(
    receive: Receive, headers: list[tuple[bytes, bytes]], method: str, limit: int, timeout: float
) -> Any:
    length_header = header(headers, b"content-length")
    if length_header is not None:
        if not length_header.isdigit():
            raise Refusal(400, "INVALID_ARGUMENT", "Content-Length is not a number")
        if int(length_header) > limit:
            raise Refusal(413, "RESOURCE_EXHAUSTED", f"body over the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            async with asyncio.timeout_at(deadline):
                message = await receive()
        except TimeoutError:
            raise Refusal(
                408, "DEADLINE_EXCEEDED", "the body did not arrive in time", [(b"connection", b"close")]
            ) from None
        if message["type"] == "http.disconnect":
            raise Refusal(499, "CANCELLED", "client went away")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise Refusal(413, "RESOURCE_EXHAUSTED", f"body over the limit of {limit} bytes")
        if chunk:
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    if not size:
        return None
    if method not in _BODY_METHODS:
        raise Refusal(400, "INVALID_ARGUMENT", f"a {method} request takes no body")
    content_type = (header(headers, b"content-type") or "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise Refusal(415, "INVALID_ARGUMENT", "the body must be application/json")
    try:
        body = _json_decode(b"".join(chunks))
    except msgspec.DecodeError as exc:
        raise Refusal(400, "INVALID_ARGUMENT", f"the body is not valid JSON: {exc}") from None
    except RecursionError:
        raise Refusal(400, "INVALID_ARGUMENT", "the body's JSON is nested too deeply") from None
    return body
