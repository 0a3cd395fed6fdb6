"""Step 1 of a request: its ``X-Request-ID``, and CORS.

The request id is taken from the request when sane, else made, and echoed on every answer. An
allowed origin gets the CORS headers on every answer (a 503 included); a preflight gets its own.
These come first, before the path is even looked at, so every answer the later steps give
carries them.
"""

from __future__ import annotations

import random
import re

from meshkit.gateway.asgi import header
from meshkit.gateway.config import Cors

_random_bits = random.Random().getrandbits
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")


def request_id_of(headers: list[tuple[bytes, bytes]]) -> str:
    given = header(headers, b"x-request-id")
    if given is not None and _REQUEST_ID.fullmatch(given):
        return given
    # 128 random bits from the process's PRNG: an id to find log lines by, not a secret (uuid4
    # reads the OS's random source: a system call per request, 8 % of the gateway's time).
    return f"{_random_bits(128):032x}"


def origin_allowed(allowed_origins: list[str], origin: str) -> bool:
    return "*" in allowed_origins or origin in allowed_origins


def cors_headers(cors: Cors | None, origin: str) -> list[tuple[bytes, bytes]]:
    assert cors is not None
    out = [(b"access-control-allow-origin", origin.encode("latin-1")), (b"vary", b"Origin")]
    if cors.allow_credentials:
        out.append((b"access-control-allow-credentials", b"true"))
    if cors.expose_headers:
        out.append((b"access-control-expose-headers", ", ".join(cors.expose_headers).encode()))
    return out


def preflight_headers(cors: Cors | None) -> list[tuple[bytes, bytes]]:
    assert cors is not None
    return [
        (b"access-control-allow-methods", ", ".join(cors.allow_methods).encode()),
        (b"access-control-allow-headers", ", ".join(cors.allow_headers).encode()),
        (b"access-control-max-age", str(cors.max_age).encode()),
    ]
