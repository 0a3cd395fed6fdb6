"""``/docs`` is served whole by the gateway: the page names only URLs of the gateway itself, its
Swagger UI assets answer from the gateway with their content type and a long-lived cache, and a
real browser whose every request to anywhere else is refused renders the routes' operations."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest
from playwright.async_api import Route, async_playwright
from playwright.async_api import TimeoutError as PlaywrightTimeout

from meshkit.gateway import GatewayConfigError, parse
from meshkit.gateway.docs import SwaggerUi, SwaggerUiMissing
from tests.gateway.conftest import ROUTES, Factory

_URLS = re.compile(r"""(?:src|href)\s*=\s*["']([^"']*)["']|url\s*:\s*["']([^"']*)["']""")
CHROMIUM = "/usr/bin/chromium"


def _page_urls(html: str) -> list[str]:
    return [a or b for a, b in _URLS.findall(html)]


async def test_the_docs_page_names_only_the_gateways_own_urls(gateway: Factory) -> None:
    async with gateway() as http:
        page = await http.get("/docs")
        assert page.status_code == 200
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        urls = [u for u in _page_urls(page.text) if not u.startswith("data:")]
        base = str(page.url)
        resolved = [urljoin(base, u) for u in urls]
        assert len(resolved) == 3, urls  # the stylesheet, the script, the document
        for url in resolved:
            assert urlsplit(url).netloc == urlsplit(base).netloc, url
        assert "http://" not in page.text.replace(base, "") and "https://" not in page.text
        assert urljoin(base, "openapi.json") in resolved
        for url, content_type, marker in (
            (next(u for u in resolved if u.endswith("/swagger-ui-bundle.js")), "text/javascript", b"SwaggerUIBundle"),
            (next(u for u in resolved if u.endswith("/swagger-ui.css")), "text/css", b".swagger-ui"),
        ):
            asset = await http.get(url)
            assert asset.status_code == 200, url
            assert asset.headers["content-type"].split(";")[0] == content_type
            assert asset.headers["cache-control"] == "public, max-age=31536000, immutable"
            assert asset.headers["x-content-type-options"] == "nosniff"
            assert marker in asset.content and len(asset.content) > 100_000
            head = await http.head(url)
            assert head.status_code == 200 and head.content == b""
            assert head.headers["content-length"] == asset.headers["content-length"]


@pytest.mark.parametrize(
    "path",
    [
        "0.0.1/swagger-ui.css",  # another version than the one served
        "{version}/index.html",  # in the distribution, but not an asset the page uses
        "{version}/../../../../etc/passwd",
        "{version}/%2e%2e/swagger-ui.css",
        "{version}/swagger-ui.css/",
        "{version}",
        "",
    ],
)
def test_only_the_pages_assets_are_served(path: str) -> None:
    ui = SwaggerUi()
    assert ui.asset(path.format(version=ui.version)) is None
    assert ui.asset(f"{ui.version}/swagger-ui.css") is not None


async def test_an_unknown_asset_is_a_404(gateway: Factory) -> None:
    async with gateway() as http:
        answer = await http.get("/docs/assets/0.0.1/swagger-ui.css")
    assert answer.status_code == 404 and answer.json()["code"] == "NOT_FOUND"


def test_a_gateway_route_cannot_take_the_assets_path() -> None:
    text = '[targets]\norders = "127.0.0.1:1"\n[[routes]]\nmethod = "GET"\npath = "/docs/assets/x"\n'
    with pytest.raises(GatewayConfigError, match="serves the OpenAPI"):
        parse(text + 'call = "orders.get"\npublic = true\n')


def test_swagger_ui_older_than_5_is_refused_naming_the_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The original swagger-ui-bundle (same import name) ships 4.x, which cannot render OpenAPI 3.1."""
    module = types.ModuleType("swagger_ui_bundle")
    module.swagger_ui_path = tmp_path / "swagger-ui-4.15.5"  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "swagger_ui_bundle", module)
    with pytest.raises(SwaggerUiMissing, match="swagger-ui-bundle-v2"):
        SwaggerUi().page("x")


async def test_a_browser_offline_but_for_the_gateway_renders_every_operation(gateway: Factory) -> None:
    assert Path(CHROMIUM).exists(), f"Debian's Chromium is not installed at {CHROMIUM} (apt-get install chromium)"
    operations = ROUTES.count("[[routes]]")
    async with gateway() as http, async_playwright() as pw:
        origin = f"http://{http.gateway.address}"  # type: ignore[attr-defined]
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
        )
        try:
            page = await browser.new_page()
            refused: list[str] = []
            served: list[str] = []

            async def only_the_gateway(route: Route) -> None:
                url = route.request.url
                if url.startswith(origin + "/") or url.startswith("data:"):
                    served.append(url)
                    await route.continue_()
                else:
                    refused.append(url)
                    await route.abort()

            await page.route("**/*", only_the_gateway)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await page.goto(f"{origin}/docs")
            blocks = page.locator(".opblock")
            try:
                await blocks.nth(operations - 1).wait_for(state="visible", timeout=30_000)
            except PlaywrightTimeout:
                pytest.fail(f"no {operations} operations rendered; refused: {refused}, page errors: {errors}")
            rendered = await blocks.count()
            summaries = await page.locator(".opblock-summary-path").all_inner_texts()
        finally:
            await browser.close()
    assert rendered == operations, summaries
    assert any("/api/orders/{order_id}" in s.replace("\u200b", "") for s in summaries), summaries
    assert refused == [], refused
    assert errors == [], errors
    assert any(u.endswith("/openapi.json") for u in served), served
