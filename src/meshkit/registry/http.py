"""The built-in registry's HTTP/JSON API, so that services in any language can take part.

    POST /v1/register    {"instance": {...}, "ttl": 10}   -> {"lease": 7}
    POST /v1/heartbeat   {"leases": [7, 9]}               -> {"unknown": [9]}   (register those again)
    POST /v1/deregister  {"id": "a1b2"}                   -> {"deregistered": true}
    GET  /v1/instances/SERVICE                            -> {"instances": [...], "revision": 4}
    GET  /v1/watch/SERVICE?revision=4&timeout=30          -> long poll: answers when the service's
                                                             revision passes 4, or at the timeout
    GET  /v1/stats                                        -> counters as JSON
    GET  /metrics                                         -> the same counters, Prometheus text format

A deliberately small HTTP/1.1 server (one request per connection, Content-Length bodies only):
request line and headers are capped at 8 KiB and bodies at 64 KiB before anything is read into
memory, a client gets 10 s to send its request, and every error is a JSON body naming the problem.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any
from urllib.parse import parse_qs, urlsplit

import msgspec

from meshkit.discovery.instance import Instance
from meshkit.errors import RpcError
from meshkit.registry.service import DEFAULT_TTL, RegistryService

log = logging.getLogger("meshkit.registry.http")

MAX_HEAD = 8 * 1024
MAX_BODY = 64 * 1024
READ_TIMEOUT = 10.0
MAX_POLL = 60.0

_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    413: "Payload Too Large",
    500: "Internal Server Error",
}


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


_decode_instance = msgspec.json.Decoder(Instance).decode
_to_builtins = msgspec.to_builtins


class RegistryHttp:
    def __init__(self, service: RegistryService) -> None:
        self.service = service
        self._server: asyncio.AbstractServer | None = None
        self.port = 0

    async def start(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(self._handle, host, port, limit=MAX_HEAD)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                async with asyncio.timeout(READ_TIMEOUT):
                    method, target, body = await self._read_request(reader)
                status, payload, content_type = await self._route(method, target, body)
            except HttpError as exc:
                status, payload, content_type = exc.status, {"error": exc.message}, "application/json"
            except TimeoutError:
                status, payload, content_type = 408, {"error": "request not received in time"}, "application/json"
            except Exception as exc:
                log.exception("registry HTTP handler failed")
                status, payload, content_type = 500, {"error": f"{type(exc).__name__}: {exc}"}, "application/json"
            data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
            head = (
                f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + data)
            await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _read_request(self, reader: asyncio.StreamReader) -> tuple[str, str, bytes]:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            raise HttpError(413, f"request line and headers are over {MAX_HEAD} bytes") from None
        except asyncio.IncompleteReadError:
            raise HttpError(400, "connection closed before the request was complete") from None
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise HttpError(400, f"malformed request line {lines[0][:100]!r}")
        method, target, _ = parts
        length = 0
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep and name.strip().lower() == "content-length":
                if not value.strip().isdigit():
                    raise HttpError(400, "Content-Length is not a number")
                length = int(value.strip())
            elif sep and name.strip().lower() == "transfer-encoding":
                raise HttpError(400, "chunked bodies are not accepted; send Content-Length")
        if length > MAX_BODY:
            raise HttpError(413, f"body of {length} bytes is over the limit of {MAX_BODY}")
        body = await reader.readexactly(length) if length else b""
        return method, target, body

    @staticmethod
    def _json(body: bytes) -> dict[str, Any]:
        try:
            data = json.loads(body or b"{}")
        except ValueError as exc:
            raise HttpError(400, f"body is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise HttpError(400, "body must be a JSON object")
        return data

    async def _route(self, method: str, target: str, body: bytes) -> tuple[int, Any, str]:
        url = urlsplit(target)
        path = url.path.rstrip("/")
        svc = self.service
        try:
            if method == "POST" and path == "/v1/register":
                data = self._json(body)
                try:
                    instance = _decode_instance(json.dumps(data.get("instance")).encode())
                except msgspec.ValidationError as exc:
                    raise HttpError(400, f"bad instance: {exc}") from None
                ttl = data.get("ttl", DEFAULT_TTL)
                if not isinstance(ttl, int | float) or isinstance(ttl, bool):
                    raise HttpError(400, "ttl must be a number of seconds")
                return 200, {"lease": await svc.register(instance, float(ttl))}, "application/json"
            if method == "POST" and path == "/v1/heartbeat":
                leases = self._json(body).get("leases")
                if not isinstance(leases, list) or not all(
                    isinstance(x, int) and not isinstance(x, bool) for x in leases
                ):
                    raise HttpError(400, "leases must be a list of integers")
                return 200, {"unknown": await svc.heartbeat(leases)}, "application/json"
            if method == "POST" and path == "/v1/deregister":
                instance_id = self._json(body).get("id")
                if not isinstance(instance_id, str):
                    raise HttpError(400, "id must be a string")
                return 200, {"deregistered": await svc.deregister(instance_id)}, "application/json"
            if method == "GET" and path.startswith("/v1/instances/"):
                name = path.removeprefix("/v1/instances/")
                return 200, self._snapshot(name), "application/json"
            if method == "GET" and path.startswith("/v1/watch/"):
                return (
                    200,
                    await self._long_poll(path.removeprefix("/v1/watch/"), parse_qs(url.query)),
                    "application/json",
                )
            if method == "GET" and path == "/v1/stats":
                return 200, await svc.stats(), "application/json"
            if method == "GET" and path == "/metrics":
                return 200, self._metrics(), "text/plain; version=0.0.4"
        except RpcError as exc:
            raise HttpError(400, exc.message) from None
        if path.startswith("/v1/") or path == "/metrics":
            raise HttpError(405, f"{method} is not allowed on {path}")
        raise HttpError(404, f"no such path {path!r}")

    def _snapshot(self, service: str) -> dict[str, Any]:
        return {
            "instances": _to_builtins(self.service.state.snapshot(service)),
            "revision": self.service.service_revision(service),
        }

    async def _long_poll(self, service: str, query: dict[str, list[str]]) -> dict[str, Any]:
        try:
            seen = int(query.get("revision", ["-1"])[0])
            timeout = min(MAX_POLL, float(query.get("timeout", ["30"])[0]))
        except ValueError:
            raise HttpError(400, "revision must be an integer and timeout a number") from None
        if self.service.service_revision(service) == seen:
            try:
                await asyncio.wait_for(asyncio.shield(self.service.change_future(service)), timeout)
            except TimeoutError:
                pass
        return self._snapshot(service)

    def _metrics(self) -> str:
        s = self.service.state
        lines = []
        for name, kind, value, text in (
            ("meshkit_registry_leases", "gauge", len(s.leases), "Leases currently held."),
            ("meshkit_registry_registrations_total", "counter", s.registrations, "Registrations accepted."),
            ("meshkit_registry_renewals_total", "counter", s.renewals, "Lease renewals accepted."),
            ("meshkit_registry_evictions_total", "counter", s.evictions, "Instances evicted at lease expiry."),
            ("meshkit_registry_self_preservation", "gauge", int(s.preserving), "1 while eviction is suspended."),
            (
                "meshkit_registry_self_preservation_episodes_total",
                "counter",
                s.preservation.episodes,
                "Times self-preservation began holding expired leases.",
            ),
            ("meshkit_registry_held_leases", "gauge", s.held, "Expired leases self-preservation is holding."),
        ):
            lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}", f"{name} {value}"]
        return "\n".join(lines) + "\n"
