"""OpenAPI 3.1 of the gateway's routes, made from the services' type hints (msgspec's JSON
Schema of each method's arguments and result), served at ``/openapi.json``; ``/docs`` is a page
that renders it (Swagger UI, served by the gateway itself: docs.py).

Where an argument goes follows the mapping (mapping.py): a path parameter in the path; for GET
and DELETE routes the others in the query; for POST, PUT and PATCH the others in a JSON body.
Routes of services the gateway has no class for are listed with open schemas.
"""

from __future__ import annotations

import copy
from typing import Any

import msgspec

from meshkit.gateway.config import GatewayConfig, Route
from meshkit.gateway.routing import compile_template
from meshkit.rpc.service import MethodSpec

_REF = "#/components/schemas/{name}"
_QUERY_METHODS = frozenset({"GET", "DELETE"})
_ERROR_STATUSES = {
    "400": "The request is malformed or its arguments are invalid",
    "401": "Credentials are missing or invalid",
    "403": "The credentials lack a required scope",
    "404": "Not found",
    "413": "The body is over the limit",
    "415": "The body is not JSON",
    "429": "Rate limited; see Retry-After",
    "500": "The service failed",
    "503": "The service is unavailable",
    "504": "The call ran out of time",
}
ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "code": {"type": "string", "description": "the RPC status name, e.g. NOT_FOUND"},
        "message": {"type": "string"},
        "request_id": {"type": "string"},
    },
    "required": ["code", "message", "request_id"],
}


def build(config: GatewayConfig, specs: dict[tuple[str, str], MethodSpec | None]) -> dict[str, Any]:
    """The OpenAPI document; ``specs`` maps (method, path) of each route to its MethodSpec, or None."""
    types: list[Any] = []
    for spec in specs.values():
        if spec is not None:
            types += [spec.signature.args_type, spec.signature.result_type]
    refs, components = msgspec.json.schema_components(types, ref_template=_REF) if types else ((), {})
    ref_of = iter(refs)
    schemas: dict[str, Any] = dict(components)
    schemas["Error"] = ERROR_SCHEMA
    paths: dict[str, Any] = {}
    for index, route in enumerate(config.routes):
        spec = specs.get((route.method, route.path))
        args_ref, result_ref = (next(ref_of), next(ref_of)) if spec is not None else (None, None)
        template = compile_template(route.path)
        args_schema = _resolve(args_ref, schemas) if args_ref is not None else None
        properties: dict[str, Any] = (args_schema or {}).get("properties", {})
        required = set((args_schema or {}).get("required", []))
        operation: dict[str, Any] = {
            "operationId": f"{route.method.lower()}_{route.call.replace('.', '_')}_{index}",
            "summary": route.summary or f"{route.call}",
            "tags": [route.service],
            "parameters": [],
            "responses": {},
        }
        for name in template.params:
            operation["parameters"].append(
                {
                    "name": name,
                    "in": "path",
                    "required": True,
                    "schema": _scalar(properties.get(name, {"type": "string"})),
                }
            )
        rest = {k: v for k, v in properties.items() if k not in template.params}
        if route.method in _QUERY_METHODS or spec is None:
            for name, schema in rest.items():
                parameter: dict[str, Any] = {"name": name, "in": "query", "required": name in required}
                parameter["schema"] = _scalar(schema)
                if parameter["schema"].get("type") == "array":
                    parameter["explode"] = True
                operation["parameters"].append(parameter)
        elif route.body is not None:
            operation["requestBody"] = {
                "required": route.body in required,
                "content": {"application/json": {"schema": rest.get(route.body, {})}},
            }
            for name, schema in rest.items():
                if name != route.body:
                    parameter = {"name": name, "in": "query", "required": name in required, "schema": _scalar(schema)}
                    operation["parameters"].append(parameter)
        elif rest:
            body = {
                "type": "object",
                "properties": rest,
                "required": sorted(n for n in rest if n in required),
                "additionalProperties": False,
            }
            if not body["required"]:
                del body["required"]
            operation["requestBody"] = {
                "required": bool(body.get("required")),
                "content": {"application/json": {"schema": body}},
            }
        result_schema: dict[str, Any] = {} if result_ref is None else result_ref
        operation["responses"][str(route.status)] = {
            "description": "The call's result",
            "content": {"application/json": {"schema": result_schema}},
        }
        for status, description in _ERROR_STATUSES.items():
            if status not in _answered_by(route):
                continue
            operation["responses"][status] = {
                "description": description,
                "content": {"application/json": {"schema": {"$ref": _REF.format(name="Error")}}},
            }
        if not route.public:
            operation["security"] = [{"bearerAuth": list(route.scopes)}, {"apiKeyAuth": []}]
        paths.setdefault(_openapi_path(route.path), {})[route.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": config.gateway.title, "version": "1"},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "apiKeyAuth": {"type": "apiKey", "in": "header", "name": config.auth.api_key_header},
            },
        },
    }


def _answered_by(route: Route) -> frozenset[str]:
    """The error statuses a route can answer: 401 only when it needs credentials, 403 only when
    it also asks for scopes (credentials without them are refused with 403, no others are)."""
    statuses = set(_ERROR_STATUSES)
    if route.public:
        statuses -= {"401", "403"}
    elif not route.scopes:
        statuses.discard("403")
    return frozenset(statuses)


def _resolve(ref: dict[str, Any], schemas: dict[str, Any]) -> dict[str, Any]:
    target = ref.get("$ref", "")
    name = target.rsplit("/", 1)[-1]
    return copy.deepcopy(schemas.get(name, ref))


def _scalar(schema: dict[str, Any]) -> dict[str, Any]:
    """A parameter's schema: absent means the default, so ``null`` is never a value to send."""
    schema = {k: v for k, v in schema.items() if k != "default"}
    options = schema.get("anyOf")
    if isinstance(options, list):
        kept = [o for o in options if o != {"type": "null"}]
        if len(kept) == 1:
            schema = {**{k: v for k, v in schema.items() if k != "anyOf"}, **kept[0]}
        else:
            schema["anyOf"] = kept
    return schema


def _openapi_path(template: str) -> str:
    """``/files/{path:rest}`` is ``/files/{path}`` in OpenAPI."""
    return template.replace(":rest}", "}")
