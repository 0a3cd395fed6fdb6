"""Review of the gateway's routing and query parsing.

- ``routing.Router`` documents "literal segments beat parameters: of the templates that match,
  the one with the most literal segments first wins", but sorts on ``(not rest, literals, ...)``:
  any template without ``:rest`` beats every ``:rest`` one, so a public ``/{tenant}/{item}``
  takes ``/admin/x`` from a protected ``/admin/{path:rest}`` (the request is served, without
  credentials, by a route its path was not written for).
- ``mapping.query_params`` refuses a query string that is not UTF-8 as sent, but lets
  ``parse_qsl`` percent-decode with ``errors="replace"``: ``?item=%ff`` reaches the service as
  ``"\\ufffd"`` (and ``%fe`` as the same), where a path holding the same bytes is a 400.
"""

from __future__ import annotations

from pathlib import Path

from meshkit.gateway.routing import Router
from tests.gateway.conftest import API_KEY, Keys
from tests.gateway.conftest import gateway_with_keys as _gateway


def test_a_literal_prefix_with_a_rest_parameter_beats_a_template_of_parameters_only() -> None:
    router: Router[str] = Router()
    router.add("GET", "/admin/{path:rest}", "admin (protected)")
    router.add("GET", "/{tenant}/{item}", "catalogue (public)")
    assert router.match("GET", ["shop", "apple"])[0] == "catalogue (public)"
    assert router.match("GET", ["admin", "a", "b"])[0] == "admin (protected)"
    assert router.match("GET", ["admin", "users"])[0] == "admin (protected)"  # today: the public route


async def test_percent_encoded_bytes_that_are_not_utf8_in_the_query_are_refused(tmp_path: Path) -> None:
    Keys(tmp_path)  # the public key the config names
    async with _gateway(tmp_path) as http:
        path = await http.get("/public/orders/%ff")
        query = await http.get("/api/orders?item=%ff", headers={"x-api-key": API_KEY})
    assert path.status_code == 400  # the path refuses them
    assert query.status_code == 400, query.text  # today: 200, the service searched for "\ufffd"
