"""The gateway config is checked when read: errors name the field."""

from __future__ import annotations

import pytest

from meshkit.gateway.config import GatewayConfigError, parse

BASE = """
[targets]
orders = "127.0.0.1:1"
"""
ROUTE = """
[[routes]]
method = "GET"
path = "/orders/{id}"
call = "orders.get"
"""


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (BASE, "no [[routes]]"),
        (BASE + ROUTE, "needs credentials"),  # deny by default: not public, and no [auth]
        ("[[routes]]\nmethod='GET'\npath='/x'\ncall='orders.get'\npublic=true\n", "no gateway.registry nor [targets]"),
        (BASE + ROUTE.replace('"GET"', '"TRACE"') + "public = true\n", "method 'TRACE'"),
        (BASE + ROUTE.replace("orders.get", "orders") + "public = true\n", "service.method"),
        (BASE + ROUTE + 'public = true\nscopes = ["a"]\n', "public and asks for scopes"),
        (BASE + ROUTE + "public = true\nstatus = 302\n", "2xx"),
        (BASE + ROUTE + "public = true\nbogus = 1\n", "bogus"),
        (BASE + ROUTE + '[auth.jwt]\nalgorithms = ["none"]\nsecret = "x"\n', "'none' not allowed"),
        (BASE + ROUTE + '[auth.jwt]\nalgorithms = ["HS256", "RS256"]\nsecret = "x"\n', "one family"),
        (BASE + ROUTE + '[auth.jwt]\nalgorithms = ["RS256"]\nsecret = "x"\n', "public_key_file"),
        (BASE + ROUTE + '[auth.jwt]\nalgorithms = ["HS256"]\npublic_key_file = "k.pub"\n', "secret"),
        (BASE + ROUTE + '[auth]\napi_keys = [{ name = "a", key = "short" }]\n', "at least 16"),
        (BASE + ROUTE + '[auth]\napi_keys = [{ name = "a" }]\n', "exactly one of sha256 and key"),
        (BASE + ROUTE + "public = true\n[gateway]\nforward_headers = ['auth-subject']\n", "may not forward"),
        (BASE + ROUTE + "public = true\n[gateway]\nheader_timeout = 0\n", "header_timeout"),
        (BASE + ROUTE + "public = true\n[cors]\nallow_origins = ['*']\nallow_credentials = true\n", "credentials"),
        (BASE + ROUTE + "public = true\n[limits]\nper_ip = { rate = 0 }\n", "rate must be > 0"),
    ],
)
def test_bad_configs_are_refused_naming_the_field(text: str, words: str) -> None:
    with pytest.raises(GatewayConfigError, match=words.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")):
        parse(text, "gw.toml")


def test_a_good_config_reads() -> None:
    config = parse(BASE + ROUTE + '[auth]\napi_keys = [{ name = "ci", key = "0123456789abcdef" }]\n')
    assert config.routes[0].service == "orders" and config.routes[0].rpc_method == "get"
