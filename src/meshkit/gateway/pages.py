"""The gateway's own pages, answered before routing: ``/openapi.json``, ``/docs`` and its assets.

With ``gateway.openapi`` on, a GET or HEAD of these paths is answered here and never routed to
a service. The document is built once, on first request (openapi.py); the page and its assets
are Swagger UI's, from docs.py.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from meshkit.gateway.asgi import Send, answer, error
from meshkit.gateway.config import GatewayConfig
from meshkit.gateway.docs import (
    ASSET_CACHE_CONTROL,
    ASSETS_PREFIX,
    PAGE_CACHE_CONTROL,
    SwaggerUi,
    SwaggerUiMissing,
)

log = logging.getLogger("meshkit.gateway")

_ASSETS_PREFIX = ASSETS_PREFIX.encode()


def is_docs(raw_path: bytes) -> bool:
    return raw_path in (b"/openapi.json", b"/docs") or raw_path.startswith(_ASSETS_PREFIX)


class Pages:
    """Serves the pages of one app: ``openapi`` builds its document, ``config`` gives its title."""

    def __init__(self, config: GatewayConfig, openapi: Callable[[], dict[str, Any]]) -> None:
        self.config = config
        self.openapi = openapi
        self._openapi: bytes | None = None
        self._swagger_ui = SwaggerUi()

    async def serve(
        self, path: str, send: Send, headers: list[tuple[bytes, bytes]], head: bool, request_id: str
    ) -> int:
        """``/openapi.json``, the ``/docs`` page, and the page's assets; the status answered."""
        if path == "/openapi.json":
            if self._openapi is None:
                self._openapi = json.dumps(self.openapi(), indent=1).encode()
            await answer(send, 200, self._openapi, headers, json_body=True, head=head)
            return 200
        try:
            if path == "/docs":
                page = self._swagger_ui.page(self.config.gateway.title)
                extra = [(b"content-type", b"text/html; charset=utf-8"), (b"cache-control", PAGE_CACHE_CONTROL)]
                await answer(send, 200, page, [*headers, *extra], head=head)
                return 200
            asset = self._swagger_ui.asset(path.removeprefix(ASSETS_PREFIX))
        except SwaggerUiMissing as exc:
            log.error("/docs: %s", exc)
            await error(send, 503, "UNAVAILABLE", str(exc), request_id, headers)
            return 503
        if asset is None:
            await error(send, 404, "NOT_FOUND", f"no asset {path}", request_id, headers)
            return 404
        extra = [
            (b"content-type", asset.content_type),
            (b"cache-control", ASSET_CACHE_CONTROL),
            (b"x-content-type-options", b"nosniff"),
        ]
        await answer(send, 200, asset.body, [*headers, *extra], head=head)
        return 200
