"""From an HTTP request to a call's arguments, and from a call's status to an HTTP status.

Arguments come from three places, in this order of authority: path parameters, query
parameters, the JSON body's fields. A name given in two places is refused (400) rather than one
silently winning. Path and query values are strings on the wire: they are converted to the
parameter's type (``"42"`` to an int, ``"true"`` to a bool) field by field; the body is JSON and
keeps JSON's types. Then the whole is checked against the method's signature, so a wrong or
missing argument is a 400 naming it, before any call is made.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

import msgspec

from meshkit.errors import StatusCode

#: gRPC status to HTTP status, as grpc-gateway and Google's API design guide map them.
HTTP_STATUS: dict[StatusCode, int] = {
    StatusCode.OK: 200,
    StatusCode.CANCELLED: 499,
    StatusCode.UNKNOWN: 500,
    StatusCode.INVALID_ARGUMENT: 400,
    StatusCode.DEADLINE_EXCEEDED: 504,
    StatusCode.NOT_FOUND: 404,
    StatusCode.ALREADY_EXISTS: 409,
    StatusCode.PERMISSION_DENIED: 403,
    StatusCode.RESOURCE_EXHAUSTED: 429,
    StatusCode.FAILED_PRECONDITION: 400,
    StatusCode.ABORTED: 409,
    StatusCode.OUT_OF_RANGE: 400,
    StatusCode.UNIMPLEMENTED: 501,
    StatusCode.INTERNAL: 500,
    StatusCode.UNAVAILABLE: 503,
    StatusCode.DATA_LOSS: 500,
    StatusCode.UNAUTHENTICATED: 401,
}


class BadRequest(Exception):
    """The request cannot become a call: ``status`` (400, 413, 415) and a message naming why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def query_params(query_string: bytes) -> dict[str, Any]:
    """Query parameters; a repeated name becomes a list (``?tag=a&tag=b``)."""
    try:
        pairs = parse_qsl(query_string.decode("ascii"), keep_blank_values=True, errors="strict")
    except UnicodeDecodeError:
        raise BadRequest(400, "the query string is not valid UTF-8 (once percent-decoded)") from None
    params: dict[str, Any] = {}
    for name, value in pairs:
        if name in params:
            current = params[name]
            params[name] = [*current, value] if isinstance(current, list) else [current, value]
        else:
            params[name] = value
    return params


class ArgumentMapper:
    """Builds one method's arguments; ``args_type`` is the method's arguments Struct, or None
    for a method known only by name (then everything is passed on as given)."""

    def __init__(self, args_type: type[msgspec.Struct] | None) -> None:
        self.args_type = args_type
        self._fields: dict[str, Any] = {}
        if args_type is not None:
            self._fields = {f.name: f.type for f in msgspec.structs.fields(args_type)}

    @property
    def names(self) -> list[str]:
        return list(self._fields)

    def build(
        self, path: dict[str, str], query: dict[str, Any], body: Any, body_field: str | None = None
    ) -> dict[str, Any]:
        """``body`` is the decoded JSON body (None: none); with ``body_field`` it is that one
        argument, else an object of arguments."""
        args: dict[str, Any] = {}
        if body_field is not None:
            body = {} if body is None else {body_field: body}
        elif body is not None and not isinstance(body, dict):
            raise BadRequest(400, "the body must be a JSON object of arguments")
        for source, values, lax in (("path", path, True), ("query", query, True), ("body", body or {}, False)):
            for name, value in values.items():
                if name in args:
                    raise BadRequest(400, f"argument {name!r} is given twice (in the {source} and before it)")
                args[name] = self._convert(name, value, source) if lax else value
        if self.args_type is None:
            return args
        unknown = [name for name in args if name not in self._fields]
        if unknown:
            raise BadRequest(
                400, f"unknown argument {unknown[0]!r}; this call takes {', '.join(self._fields) or 'none'}"
            )
        try:
            msgspec.convert(args, self.args_type)
        except msgspec.ValidationError as exc:
            raise BadRequest(400, f"invalid arguments: {exc}") from None
        return args

    def _convert(self, name: str, value: Any, source: str) -> Any:
        kind = self._fields.get(name)
        if kind is None:
            return value
        try:
            return msgspec.to_builtins(msgspec.convert(value, kind, strict=False))
        except msgspec.ValidationError as exc:
            if isinstance(value, str):  # one value for a list parameter: ?tag=a
                try:
                    return msgspec.to_builtins(msgspec.convert([value], kind, strict=False))
                except msgspec.ValidationError:
                    pass
            raise BadRequest(400, f"{source} parameter {name!r}: {exc}") from None
