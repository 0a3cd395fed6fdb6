"""``/docs``: Swagger UI rendering ``/openapi.json``, served whole by the gateway itself.

The page and the two files it needs (``swagger-ui-bundle.js``, ``swagger-ui.css``) come from
the gateway, so a reader's browser fetches nothing from anywhere else: the docs work on a
network without the internet, and no third party learns who reads them. The files are Swagger
UI's own distribution (Apache-2.0) as the ``swagger-ui-bundle-v2`` package ships it; they are
served under a versioned path (``/docs/assets/5.31.0/swagger-ui.css``), so they can be cached
for good and an upgrade changes the URL rather than waiting for caches to expire.

Every URL in the page is relative, so a gateway mounted under a prefix (``/gw/docs``) loads its
own assets and its own document.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from importlib.resources.abc import Traversable

ASSETS_PREFIX = "/docs/assets/"
#: The files the page uses, and what they are; no other name is ever looked up (no path from a
#: request reaches the file system).
ASSET_TYPES = {
    "swagger-ui-bundle.js": b"text/javascript; charset=utf-8",
    "swagger-ui.css": b"text/css; charset=utf-8",
}
#: A versioned URL never changes content: cache it for a year, without revalidating.
ASSET_CACHE_CONTROL = b"public, max-age=31536000, immutable"
#: The page is small and names the versioned assets: revalidate it, so an upgrade is seen.
PAGE_CACHE_CONTROL = b"no-cache"
#: Swagger UI renders OpenAPI 3.1 (what the gateway serves) from 5.0 on.
MIN_MAJOR = 5

_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>{title}</title>
  <link rel="icon" href="data:,">
  <link rel="stylesheet" href="docs/assets/{version}/swagger-ui.css">
</head>
<body>
  <div id="docs"></div>
  <script src="docs/assets/{version}/swagger-ui-bundle.js"></script>
  <script>window.ui = SwaggerUIBundle({{url: "openapi.json", dom_id: "#docs", validatorUrl: null}});</script>
</body>
</html>
"""


class SwaggerUiMissing(RuntimeError):
    """Swagger UI's files cannot be found (a broken install): ``/docs`` answers 503 saying so."""


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    content_type: bytes


class SwaggerUi:
    """The page and its assets, read once from the installed distribution and kept in memory
    (about 1.7 MB: reading them per request would cost more than serving them)."""

    def __init__(self, directory: Traversable | None = None, version: str | None = None) -> None:
        self._directory = directory
        self._version = version
        self._assets: dict[str, Asset] = {}

    @property
    def version(self) -> str:
        self._locate()
        assert self._version is not None
        return self._version

    def page(self, title: str) -> bytes:
        return _PAGE.format(title=escape(title), version=escape(self.version)).encode()

    def asset(self, path: str) -> Asset | None:
        """The asset at ``path`` below ``/docs/assets/`` (``5.31.0/swagger-ui.css``), or None."""
        version, _, name = path.partition("/")
        if name not in ASSET_TYPES or version != self.version:
            return None
        asset = self._assets.get(name)
        if asset is None:
            assert self._directory is not None
            try:
                body = (self._directory / name).read_bytes()
            except OSError as exc:
                raise SwaggerUiMissing(f"cannot read Swagger UI's {name} in {self._directory}: {exc}") from None
            asset = self._assets[name] = Asset(body, ASSET_TYPES[name])
        return asset

    def _locate(self) -> None:
        if self._directory is not None and self._version is not None:
            return
        try:
            from swagger_ui_bundle import swagger_ui_path
        except ImportError:
            raise SwaggerUiMissing(
                "Swagger UI is not installed: pip install swagger-ui-bundle-v2 (a dependency of meshkit)"
            ) from None
        directory: Traversable = swagger_ui_path
        version = directory.name.removeprefix("swagger-ui-")
        major = version.partition(".")[0]
        if not major.isdigit() or int(major) < MIN_MAJOR:
            # The original swagger-ui-bundle package uses the same import name and ships 4.x.
            raise SwaggerUiMissing(
                f"the installed swagger_ui_bundle ships Swagger UI {version}, which cannot render OpenAPI 3.1: "
                "pip install swagger-ui-bundle-v2"
            )
        self._directory, self._version = directory, version
