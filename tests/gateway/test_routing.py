"""Path normalisation and templates (pure)."""

from __future__ import annotations

import pytest

from meshkit.gateway.routing import BadPath, NoRoute, Router, compile_template, split_path


@pytest.mark.parametrize(
    ("raw", "segments"),
    [
        ("/", []),
        ("/api/orders/1", ["api", "orders", "1"]),
        ("/api/orders/1/", ["api", "orders", "1"]),
        ("/api/orders/a%20b", ["api", "orders", "a b"]),
        ("/api/%C3%A9t%C3%A9", ["api", "été"]),
        ("/api/a.b/..c", ["api", "a.b", "..c"]),
    ],
)
def test_split_path(raw: str, segments: list[str]) -> None:
    assert split_path(raw) == segments


@pytest.mark.parametrize(
    "raw",
    [
        "api/orders",
        "//api",
        "/api//orders",
        "/api/./orders",
        "/api/../orders",
        "/api/%2e%2e/orders",
        "/api/%2E/orders",
        "/api/orders%2F1",
        "/api/orders%2f1",
        "/api\\orders",
        "/api/orders%5C1",
        "/api/orders/1%00",
        "/api/orders/%zz",
        "/api/orders/%",
        "/api/orders/%C3",
        "/api/orders/%0a",
        "/api/orders/a b",
    ],
)
def test_ambiguous_paths_are_refused(raw: str) -> None:
    with pytest.raises(BadPath):
        split_path(raw)


def test_literal_segments_win_over_parameters() -> None:
    router: Router[str] = Router()
    router.add("GET", "/orders/{id}", "by id")
    router.add("GET", "/orders/mine", "mine")
    assert router.match("GET", ["orders", "mine"])[0] == "mine"
    value, template, params = router.match("GET", ["orders", "7"])
    assert (value, template.text, params) == ("by id", "/orders/{id}", {"id": "7"})


def test_rest_parameter_takes_the_remaining_segments() -> None:
    router: Router[str] = Router()
    router.add("GET", "/files/{path:rest}", "files")
    assert router.match("GET", ["files", "a", "b.txt"])[2] == {"path": "a/b.txt"}
    with pytest.raises(NoRoute):
        router.match("GET", ["files"])


def test_405_lists_the_methods_the_path_has() -> None:
    router: Router[str] = Router()
    router.add("GET", "/orders", "list")
    router.add("POST", "/orders", "create")
    with pytest.raises(NoRoute) as info:
        router.match("DELETE", ["orders"])
    assert info.value.allowed == ["GET", "POST"]
    assert router.match("HEAD", ["orders"])[0] == "list"  # HEAD is GET without a body


@pytest.mark.parametrize(
    ("template", "words"),
    [
        ("orders", "start with /"),
        ("/orders//x", "empty segment"),
        ("/orders/{id}/{id}", "twice"),
        ("/orders/x{id}", "whole segment"),
        ("/files/{p:rest}/x", "last"),
        ("/orders/..", ". or .."),
    ],
)
def test_bad_templates_are_refused_naming_why(template: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        compile_template(template)


def test_two_routes_for_the_same_requests_are_refused() -> None:
    router: Router[str] = Router()
    router.add("GET", "/orders/{id}", "a")
    with pytest.raises(ValueError, match="match the same requests"):
        router.add("GET", "/orders/{order_id}", "b")


def test_a_literal_prefix_with_a_rest_parameter_beats_a_template_of_parameters_only() -> None:
    """Of the templates that match, the one with the most literal segments wins, a ``:rest`` one
    included: a public ``/{tenant}/{item}`` does not take ``/admin/x`` from ``/admin/{path:rest}``."""
    router: Router[str] = Router()
    router.add("GET", "/admin/{path:rest}", "admin (protected)")
    router.add("GET", "/{tenant}/{item}", "catalogue (public)")
    assert router.match("GET", ["shop", "apple"])[0] == "catalogue (public)"
    assert router.match("GET", ["admin", "a", "b"])[0] == "admin (protected)"
    assert router.match("GET", ["admin", "users"])[0] == "admin (protected)"
