"""Codecs for call arguments and results, built once per method from its type hints.

Arguments travel as a map keyed by parameter name (msgpack by default, JSON when the JSON flag is
set), decoded by msgspec straight into a Struct made from the method's signature: validation and
decoding are one pass in C, and a wrong type names the field that is wrong.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import typing
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from meshkit.errors import RpcError, StatusCode

_AT_PATH = re.compile(r" - at `\$\.?([^`]*)`")
_UNKNOWN_ARGUMENT = re.compile(r"Object contains unknown field `([^`]*)`$")
#: Result types checked by the exact type of the value (the common case: no decoding); a value of
#: another type, a subclass say, is checked the thorough way.
_EXACT_RESULT_TYPES: dict[Any, tuple[type, ...]] = {
    str: (str,),
    bytes: (bytes,),
    int: (int,),
    bool: (bool,),
    float: (float, int),
    None: (type(None),),
}

msgpack_encode = msgspec.msgpack.Encoder().encode
json_encode = msgspec.json.Encoder().encode


def describe_validation_error(exc: Exception) -> str:
    """msgspec's message with its ``$.a.b`` path rewritten as the field a person would name."""
    text = str(exc)
    return _AT_PATH.sub(lambda m: f" (field `{m.group(1)}`)" if m.group(1) else "", text)


@dataclass(frozen=True, slots=True)
class Signature:
    """Everything needed to move one method's arguments and result across the wire."""

    names: tuple[str, ...]
    kwonly: tuple[str, ...]
    args_type: type[msgspec.Struct]
    result_type: Any
    streaming: bool
    decode_args_msgpack: Callable[[bytes], Any]
    decode_args_json: Callable[[bytes], Any]
    decode_result_msgpack: Callable[[bytes], Any]
    decode_result_json: Callable[[bytes], Any]
    #: Exact types a result may have without being checked further (see check_result), or None
    #: when every result is decoded again to be checked; ``()`` when nothing is checked (``Any``).
    result_exact: tuple[type, ...] | None = ()

    def build_args(self, qualname: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> msgspec.Struct:
        """Bind a Python call's arguments the way the method itself would, or raise INVALID_ARGUMENT."""
        try:
            return self.args_type(*args, **kwargs)
        except TypeError as exc:
            raise RpcError(StatusCode.INVALID_ARGUMENT, f"{qualname}: {exc}", not_processed=True) from None

    def decode_args(self, qualname: str, body: bytes, json: bool) -> msgspec.Struct:
        try:
            if json:
                return self.decode_args_json(body)  # type: ignore[no-any-return]
            return self.decode_args_msgpack(body)  # type: ignore[no-any-return]
        except msgspec.ValidationError as exc:
            unknown = _UNKNOWN_ARGUMENT.match(str(exc))
            if unknown is not None:
                takes = ", ".join(self.names) or "no arguments"
                raise RpcError(
                    StatusCode.INVALID_ARGUMENT,
                    f"unknown argument `{unknown.group(1)}` for {qualname}; it takes: {takes}",
                ) from None
            raise RpcError(
                StatusCode.INVALID_ARGUMENT, f"invalid arguments for {qualname}: {describe_validation_error(exc)}"
            ) from None
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            raise RpcError(StatusCode.INVALID_ARGUMENT, f"arguments for {qualname} are not decodable: {exc}") from None

    def check_result(self, qualname: str, value: Any, body: bytes, json: bool) -> RpcError | None:
        """Whether a handler's ``value`` (encoded as ``body``) has the method's declared result
        type; the error to answer with (INTERNAL, naming the method and the type) if not.

        Values of exactly the declared primitive, Struct or dataclass type pass at the cost of a
        type lookup; anything else is checked by decoding ``body`` the way the caller will, so the
        server never answers OK with a result of another type than its hints say."""
        exact = self.result_exact
        if exact is not None and (not exact or type(value) in exact):
            return None
        try:
            if self.result_type is None:  # ``-> None``: the decoders accept anything (see below)
                raise msgspec.ValidationError(f"Expected `null`, got `{type(value).__name__}`")
            if json:
                self.decode_result_json(body)
            else:
                self.decode_result_msgpack(body)
        except (msgspec.MsgspecError, UnicodeDecodeError) as exc:
            return RpcError(
                StatusCode.INTERNAL,
                f"{qualname} returned a result that does not match its return type "
                f"{_type_name(self.result_type)}: {describe_validation_error(exc)}",
            )
        return None

    def decode_result(self, qualname: str, body: bytes, json: bool) -> Any:
        try:
            if json:
                return self.decode_result_json(body)
            return self.decode_result_msgpack(body)
        except (msgspec.MsgspecError, UnicodeDecodeError) as exc:
            raise RpcError(
                StatusCode.INTERNAL, f"result of {qualname} does not match its type: {describe_validation_error(exc)}"
            ) from None


def _stream_item_type(annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin is not None and origin in (AsyncIterator, typing.AsyncIterator, typing.AsyncGenerator):
        targs = typing.get_args(annotation)
        return targs[0] if targs else Any
    from collections.abc import AsyncGenerator, AsyncIterable

    if origin in (AsyncGenerator, AsyncIterable):
        targs = typing.get_args(annotation)
        return targs[0] if targs else Any
    return Any


def _type_name(annotation: Any) -> str:
    if annotation is None:
        return "None"
    if isinstance(annotation, type) and typing.get_origin(annotation) is None:
        return annotation.__qualname__
    return repr(annotation).replace("typing.", "")


def result_exact_types(result_type: Any) -> tuple[type, ...] | None:
    """What :meth:`Signature.check_result` accepts without decoding: ``()`` for ``Any`` (no
    check), the exact types of a primitive, None for everything else (decode to check)."""
    if result_type is Any:
        return ()
    if isinstance(result_type, type) and (
        issubclass(result_type, msgspec.Struct) or dataclasses.is_dataclass(result_type)
    ):
        # An instance of exactly the declared class passes by its type: decoding it again would
        # cost as much as the rest of the server's work on a call (its field values are its
        # constructor's business, and a type checker's). Anything else is decoded to be checked.
        return (result_type,)
    return _EXACT_RESULT_TYPES.get(result_type)


def signature_of(func: Callable[..., Any], qualname: str) -> Signature:
    """Build the codecs of an ``@rpc`` method. Raises TypeError at definition time for what the wire
    cannot carry (``*args``, ``**kwargs``, positional-only parameters)."""
    sig = inspect.signature(func)
    try:
        hints = typing.get_type_hints(func)
    except NameError as exc:
        raise TypeError(f"{qualname}: cannot resolve a type hint ({exc})") from None
    params = list(sig.parameters.values())
    if params and params[0].name in ("self", "cls"):
        params = params[1:]
    fields: list[tuple[str, Any] | tuple[str, Any, Any]] = []
    for p in params:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise TypeError(f"{qualname}: *args and **kwargs cannot cross the wire; name each parameter")
        if p.kind is p.POSITIONAL_ONLY:
            raise TypeError(f"{qualname}: positional-only parameter {p.name!r} has no name on the wire")
        ann = hints.get(p.name, Any)
        if p.default is inspect.Parameter.empty:
            fields.append((p.name, ann))
        else:
            fields.append((p.name, ann, p.default))
    # Required fields must come first in a Struct; keyword binding still matches the method.
    required = [f for f in fields if len(f) == 2]
    optional = [f for f in fields if len(f) == 3]
    if [f[0] for f in required + optional] != [f[0] for f in fields]:
        raise TypeError(f"{qualname}: parameters with defaults must come after those without")
    # Unknown argument names are refused, as the gateway refuses them: a caller's typo (or an
    # argument the server's version does not have) must not be dropped without a word.
    args_type = msgspec.defstruct(
        f"{qualname}.args", fields, module=func.__module__, omit_defaults=True, forbid_unknown_fields=True
    )
    streaming = inspect.isasyncgenfunction(func)
    result_type = hints.get("return", Any)
    if streaming:
        result_type = _stream_item_type(result_type)
    elif result_type is type(None):
        result_type = None
    kwonly = tuple(p.name for p in params if p.kind is p.KEYWORD_ONLY)
    if kwonly and [p.name for p in params][-len(kwonly) :] != list(kwonly):
        raise TypeError(f"{qualname}: keyword-only parameters must come last")
    return Signature(
        names=tuple(p.name for p in params),
        kwonly=kwonly,
        args_type=args_type,
        result_type=result_type,
        streaming=streaming,
        decode_args_msgpack=msgspec.msgpack.Decoder(args_type).decode,
        decode_args_json=msgspec.json.Decoder(args_type).decode,
        decode_result_msgpack=msgspec.msgpack.Decoder(result_type if result_type is not None else Any).decode,
        decode_result_json=msgspec.json.Decoder(result_type if result_type is not None else Any).decode,
        result_exact=result_exact_types(result_type),
    )


def encode_result(value: Any, json: bool) -> bytes:
    """Encode a handler's return value; something msgspec cannot encode is the handler's bug."""
    try:
        return json_encode(value) if json else msgpack_encode(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise RpcError(StatusCode.INTERNAL, f"handler returned a value that cannot be encoded: {exc}") from None
