"""The routes of a config bound to the methods they call, checked once, when the app is made.

Each route gets its method's spec (from the service classes named in ``gateway.services``) and
an ArgumentMapper (mapping.py) of its signature; a route naming a method the service lacks, a
stream, a path parameter or ``body`` the method does not take is refused here, at startup,
rather than answered as an error on every request. What a request then needs of its route is
its ``Bound``, from the router.
"""

from __future__ import annotations

from dataclasses import dataclass

from meshkit.gateway.config import GatewayConfig, GatewayConfigError, Route
from meshkit.gateway.mapping import ArgumentMapper
from meshkit.gateway.routing import Router, compile_template
from meshkit.rpc.loading import ServiceImportError, import_service
from meshkit.rpc.service import MethodSpec, Service, method_specs, service_name


@dataclass(frozen=True)
class Bound:
    """A configured route with what serving it needs."""

    route: Route
    spec: MethodSpec | None
    mapper: ArgumentMapper


def load_services(names: list[str]) -> dict[str, type[Service]]:
    """Service classes by service name, from ``module:Class`` names, found as ``meshkit run``
    finds them: the working directory first, then ``sys.path`` (rpc.loading)."""
    found: dict[str, type[Service]] = {}
    for index, name in enumerate(names):
        try:
            obj = import_service(name)
        except ServiceImportError as exc:
            raise GatewayConfigError(f"gateway.services[{index}]: {exc}") from None
        cls = obj if isinstance(obj, type) else type(obj)
        found[service_name(cls)] = cls
    return found


def bind_routes(
    config: GatewayConfig, services: dict[str, type[Service]]
) -> tuple[Router[Bound], dict[tuple[str, str], MethodSpec | None]]:
    """The router of the config's routes, and each route's spec by ``(method, path)`` (what the
    OpenAPI document is built from)."""
    router: Router[Bound] = Router()
    specs: dict[tuple[str, str], MethodSpec | None] = {}
    for route in config.routes:
        spec = None
        cls = services.get(route.service)
        if cls is not None:
            spec = method_specs(cls).get(route.rpc_method)
            if spec is None:
                raise ValueError(
                    f"route {route.method} {route.path}: {route.service} has no method {route.rpc_method!r}"
                )
            if spec.streaming:
                raise ValueError(
                    f"route {route.method} {route.path}: {route.call} is a stream; routes call unary methods"
                )
        specs[(route.method, route.path)] = spec
        mapper = ArgumentMapper(spec.signature.args_type if spec is not None else None)
        router.add(route.method, route.path, Bound(route, spec, mapper))
        if spec is not None:
            _check_params(route, mapper)
            if route.body is not None and route.body not in mapper.names:
                raise ValueError(
                    f"route {route.method} {route.path}: body = {route.body!r} is not a parameter of {route.call}"
                )
    return router, specs


def _check_params(route: Route, mapper: ArgumentMapper) -> None:
    missing = [p for p in compile_template(route.path).params if p not in mapper.names]
    if missing:
        raise ValueError(
            f"route {route.method} {route.path}: {route.call} has no parameter {missing[0]!r} "
            f"(it takes {', '.join(mapper.names) or 'none'})"
        )
