"""The ASGI vocabulary every step of a request shares (app.py composes the steps).

The scope / receive / send types; reading a request header; writing an answer, or the JSON
error ``{"code", "message", "request_id"}``; and ``Refusal``, which a step raises to answer with
an error and stop the request there. Kept apart so each step's module needs only this, not the
application.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class Refusal(Exception):
    """An error answer from a step of the request: raised, it stops the request there."""

    def __init__(
        self, status: int, code: str, message: str, headers: list[tuple[bytes, bytes]] | None = None, template: str = ""
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or []
        self.template = template


def challenge(status: int) -> list[tuple[bytes, bytes]]:
    return [(b"www-authenticate", b'Bearer realm="meshkit"')] if status == 401 else []


def header(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key == name:
            return value.decode("latin-1")
    return None


async def answer(
    send: Send,
    status: int,
    body: bytes,
    headers: list[tuple[bytes, bytes]],
    *,
    json_body: bool = False,
    head: bool = False,
    no_body: bool = False,
) -> None:
    out = list(headers)
    if json_body:
        out.append((b"content-type", b"application/json"))
    if not no_body:  # a 204 has neither a body nor a Content-Length
        out.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": out})
    await send({"type": "http.response.body", "body": b"" if head else body})


async def error(
    send: Send, status: int, code: str, message: str, request_id: str, headers: list[tuple[bytes, bytes]]
) -> None:
    body = json.dumps({"code": code, "message": message, "request_id": request_id}).encode()
    await answer(send, status, body, headers, json_body=True)
