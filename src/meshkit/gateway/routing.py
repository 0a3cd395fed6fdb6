"""Path templates and the path normalisation every authorisation decision is made on.

A route's path is a template: ``/api/orders/{order_id}`` (a parameter matches one segment) and
``/files/{path:rest}`` (the last parameter may take the rest of the path). Matching is on the
*raw* path split at ``/`` and then percent-decoded segment by segment, so an encoded slash stays
inside its segment and never moves a request to another route.

Before matching, a path is refused (400) when it could mean different things to different
parsers, which is how authorisation bypasses are made: empty segments (``//``), ``.`` or ``..``
segments (raw or encoded), encoded slashes or backslashes (``%2F``, ``%5C``), backslashes, NUL,
control characters, bad percent escapes and invalid UTF-8. What is left has exactly one meaning.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar
from urllib.parse import unquote_to_bytes

T = TypeVar("T")

_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(:rest)?\}")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_FORBIDDEN_ESCAPES = ("%2f", "%5c", "%00")  # slash, backslash, NUL (dots are checked per segment)


class BadPath(ValueError):
    """A request path that is refused before routing; the message says why."""


def split_path(raw: str) -> list[str]:
    """The decoded segments of a raw (still percent-encoded) path, or :class:`BadPath`."""
    if not raw.startswith("/"):
        raise BadPath("the path must start with /")
    if len(raw) > 1 and raw.endswith("/"):
        raw = raw[:-1]  # one trailing slash is the same resource
    if raw == "/":
        return []
    if "\\" in raw or any(ord(c) < 0x21 or ord(c) == 0x7F for c in raw):
        raise BadPath("the path holds a backslash, a space or a control character")
    if _BAD_ESCAPE.search(raw):
        raise BadPath("the path holds a % that is not a percent escape")
    lowered = raw.lower()
    for escape in _FORBIDDEN_ESCAPES:
        if escape in lowered:
            raise BadPath(f"the path holds an encoded slash, backslash or NUL ({escape.upper()})")
    segments = []
    for part in raw[1:].split("/"):
        if not part:
            raise BadPath("the path holds an empty segment (//)")
        try:
            decoded = unquote_to_bytes(part).decode("utf-8")
        except UnicodeDecodeError:
            raise BadPath("the path is not valid UTF-8 once decoded") from None
        if decoded in (".", ".."):
            raise BadPath("the path holds a . or .. segment")
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in decoded):
            raise BadPath("the path holds an encoded control character")
        segments.append(decoded)
    return segments


@dataclass(frozen=True)
class Template:
    """A compiled path template: literal segments and parameter names, in order."""

    text: str
    parts: tuple[tuple[bool, str], ...]  # (is_param, literal or name)
    rest: bool  # the last parameter takes the rest of the path

    @property
    def params(self) -> list[str]:
        return [name for is_param, name in self.parts if is_param]

    def match(self, segments: Sequence[str]) -> dict[str, str] | None:
        parts = self.parts
        if self.rest:
            if len(segments) < len(parts):
                return None
        elif len(segments) != len(parts):
            return None
        params: dict[str, str] = {}
        for i, (is_param, text) in enumerate(parts):
            if is_param:
                if self.rest and i == len(parts) - 1:
                    params[text] = "/".join(segments[i:])
                else:
                    params[text] = segments[i]
            elif segments[i] != text:
                return None
        return params


def compile_template(text: str) -> Template:
    """Compile ``/a/{b}/c``; raises ValueError naming what is wrong with the template."""
    if not text.startswith("/"):
        raise ValueError(f"path template {text!r} must start with /")
    if text == "/":
        return Template(text, (), False)
    parts: list[tuple[bool, str]] = []
    rest = False
    raw_parts = text[1:].rstrip("/").split("/")
    for i, part in enumerate(raw_parts):
        if not part:
            raise ValueError(f"path template {text!r} has an empty segment")
        match = _PARAM.fullmatch(part)
        if match:
            if match.group(1) in [name for is_param, name in parts if is_param]:
                raise ValueError(f"path template {text!r} names {{{match.group(1)}}} twice")
            if match.group(2):
                if i != len(raw_parts) - 1:
                    raise ValueError(f"in path template {text!r}, only the last parameter may be :rest")
                rest = True
            parts.append((True, match.group(1)))
        elif "{" in part or "}" in part:
            raise ValueError(f"path template {text!r}: a parameter must be a whole segment, like {{name}}")
        else:
            try:
                split_path("/" + part)
            except BadPath as exc:
                raise ValueError(f"path template {text!r}: {exc}") from None
            parts.append((False, unquote_to_bytes(part).decode("utf-8")))
    return Template(text, tuple(parts), rest)


class NoRoute(Exception):
    """No route for the path (404), or routes for the path but not this method (405: ``allowed``)."""

    def __init__(self, allowed: list[str]) -> None:
        super().__init__("method not allowed" if allowed else "not found")
        self.allowed = allowed


@dataclass(frozen=True)
class _Entry(Generic[T]):
    method: str
    template: Template
    value: T


class Router(Generic[T]):
    """Routes (method, template) to a value. Literal segments beat parameters: of the templates
    that match, the one with the most literal segments first wins, so ``/orders/mine`` is not
    taken by ``/orders/{id}``. Two routes that would match the same requests are an error."""

    def __init__(self) -> None:
        self._entries: list[_Entry[T]] = []

    def add(self, method: str, template: str, value: T) -> None:
        compiled = compile_template(template)
        method = method.upper()
        for entry in self._entries:
            if entry.method == method and _shape(entry.template) == _shape(compiled):
                raise ValueError(f"routes {method} {entry.template.text} and {template} match the same requests")
        self._entries.append(_Entry(method, compiled, value))
        self._entries.sort(key=lambda e: _specificity(e.template), reverse=True)

    def match(self, method: str, segments: Sequence[str]) -> tuple[T, Template, dict[str, str]]:
        allowed: list[str] = []
        method = "GET" if method == "HEAD" else method
        for entry in self._entries:
            params = entry.template.match(segments)
            if params is None:
                continue
            if entry.method == method:
                return entry.value, entry.template, params
            if entry.method not in allowed:
                allowed.append(entry.method)
        raise NoRoute(sorted(allowed))

    def __iter__(self):  # type: ignore[no-untyped-def]
        return ((e.method, e.template, e.value) for e in self._entries)


def _shape(template: Template) -> tuple[object, ...]:
    return (*((None if is_param else text) for is_param, text in template.parts), template.rest)


def _specificity(template: Template) -> tuple[int, int, int]:
    """Most literal segments first; then fixed length before :rest; then longer first."""
    literals = sum(1 for is_param, _ in template.parts if not is_param)
    return (literals, not template.rest, len(template.parts))
