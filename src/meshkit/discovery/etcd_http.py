"""etcd v3's JSON gateway over httpx: the few helpers every etcd backend (registry, locks) shares.

Keys and values travel base64-encoded; a prefix is selected by a range ending at the prefix with
its last byte plus one. Endpoints are tried in order and the one that answered is tried first
next time, so a dead member fails over to the next. The gateway answers a failed request with a
JSON body carrying gRPC's ``code`` and the message; :class:`EtcdError` keeps both.

The HTTP client (httpx) is imported here only: ``pip install meshkit[etcd]``.
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

#: gRPC's UNAUTHENTICATED, as the gateway reports a missing or bad token.
GRPC_UNAUTHENTICATED = 16


def b64(text: str | bytes) -> str:
    return base64.b64encode(text.encode() if isinstance(text, str) else text).decode()


def unb64(text: str) -> bytes:
    return base64.b64decode(text)


def prefix_end(prefix: str) -> str:
    """The range end that selects every key starting with ``prefix`` (last byte + 1), base64."""
    raw = bytearray(prefix.encode())
    raw[-1] += 1
    return base64.b64encode(bytes(raw)).decode()


class EtcdError(Exception):
    """etcd answered with an error (``code`` is gRPC's status code, 0 when it gave none)."""

    def __init__(self, message: str, code: int = 0) -> None:
        super().__init__(message)
        self.code = code


class EtcdUnreachable(EtcdError):
    """No endpoint answered at all (refused, timed out, reset)."""


def explain(exc: EtcdError, where: str, request: str) -> tuple[str, bool]:
    """What an etcd error means to a user of it, worded the same everywhere: (message, whether
    etcd refused our credentials). ``request``: what was asked ("lock", "config")."""
    if isinstance(exc, EtcdUnreachable):
        return f"etcd at {where} cannot be reached ({exc}); start it with: bash scripts/engines.sh", False
    if exc.code == GRPC_UNAUTHENTICATED:
        return f"etcd at {where} refused our credentials: {exc}", True
    return f"etcd at {where} could not serve the {request} request: {exc}", False


class EtcdHTTP:
    """POSTs to ``/v3/...`` of the first endpoint of ``endpoints`` ("h1:2379,h2:2379") that answers."""

    def __init__(self, endpoints: str, *, what: str = "etcd") -> None:
        try:
            import httpx
        except ImportError:  # pragma: no cover - depends on the install
            raise ImportError(f"{what} needs httpx: pip install 'meshkit[etcd]'") from None
        self._httpx = httpx
        self.endpoints = [e if "://" in e else f"http://{e}" for e in endpoints.split(",") if e]
        if not self.endpoints:
            raise ValueError("etcd:// needs at least one HOST:PORT")
        # No cap on connections: every watch is a streaming request of its own.
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(5.0, read=None),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=32),
        )
        self.preferred = 0

    @property
    def current(self) -> str:
        """The endpoint tried first (the last one that answered)."""
        return self.endpoints[self.preferred]

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST to the first endpoint that answers; the one that did is tried first next time."""
        errors = []
        n = len(self.endpoints)
        for step in range(n):
            index = (self.preferred + step) % n
            try:
                response = await self._http.post(f"{self.endpoints[index]}/v3/{path}", json=body)
            except self._httpx.HTTPError as exc:
                errors.append(f"{self.endpoints[index]}: {exc!r}")
                continue
            self.preferred = index
            try:
                data: dict[str, Any] = response.json()
            except ValueError:
                raise EtcdError(f"etcd {path} failed: HTTP {response.status_code} {response.text[:200]}") from None
            if response.status_code != 200 or "error" in data:
                message = data.get("error") or data.get("message") or response.text
                raise EtcdError(f"etcd {path} failed: {message}", int(data.get("code") or 0))
            return data
        raise EtcdUnreachable("no etcd endpoint answered: " + "; ".join(errors))

    @contextlib.asynccontextmanager
    async def stream(self, path: str, body: dict[str, Any]) -> AsyncIterator[EtcdStream]:
        """A streaming POST (a watch) to the preferred endpoint, as an :class:`EtcdStream`."""
        url = f"{self.current}/v3/{path}"
        try:
            async with self._http.stream("POST", url, json=body) as response:
                yield EtcdStream(self, path, response)
        except self._httpx.HTTPError as exc:
            raise EtcdUnreachable(f"etcd {path} stream from {self.current} broke: {exc!r}") from exc

    async def aclose(self) -> None:
        await self._http.aclose()


class EtcdStream:
    """The ``result`` of each JSON message of a streaming answer; ``aclose`` ends it from outside."""

    def __init__(self, etcd: EtcdHTTP, path: str, response: Any) -> None:
        self._etcd = etcd
        self._path = path
        self._response = response

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        return self._messages()

    async def _messages(self) -> AsyncIterator[dict[str, Any]]:
        try:
            async for line in self._response.aiter_lines():
                if line.strip():
                    message = json.loads(line)
                    if "error" in message:
                        error = message["error"]
                        raise EtcdError(f"etcd {self._path} failed: {error.get('message', error)}")
                    yield message.get("result", {})
        except self._etcd._httpx.HTTPError as exc:
            raise EtcdUnreachable(f"etcd {self._path} stream from {self._etcd.current} broke: {exc!r}") from exc

    async def aclose(self) -> None:
        await self._response.aclose()
