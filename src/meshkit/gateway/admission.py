"""Steps 3 to 5 of a request, once it is routed: who may send it, and how often.

The per-IP limit (429 + ``Retry-After``) comes before credentials, so guessing them is slow;
then the credentials (auth.Authenticator: 400 if ambiguous, 401 if missing or bad, 403 without
the route's scopes; public routes need none); then the per-caller limit. The rate tables are
limits.RateLimits; this module turns their decisions and the authenticator's into answers.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable

from meshkit.errors import StatusCode
from meshkit.gateway.asgi import Refusal, Scope, challenge
from meshkit.gateway.auth import Authenticator, AuthError, Identity, allowed
from meshkit.gateway.config import Route


def client_address(scope: Scope, headers: list[tuple[bytes, bytes]], trust_forwarded: bool) -> str:
    if trust_forwarded:
        forwarded = [v for k, v in headers if k == b"x-forwarded-for"]
        if forwarded:
            last = forwarded[-1].decode("latin-1").split(",")[-1].strip()
            if last:
                return last
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


async def take(decision: Awaitable[tuple[bool, float]], what: str) -> None:
    ok, wait = await decision
    if not ok:
        raise Refusal(
            429,
            StatusCode.RESOURCE_EXHAUSTED.name,
            f"rate limit of this {what} reached",
            [(b"retry-after", str(max(1, math.ceil(wait))).encode())],
        )


def authenticate(auth: Authenticator, headers: list[tuple[bytes, bytes]], route: Route) -> Identity | None:
    try:
        identity = auth.authenticate(headers)
    except AuthError as exc:
        code = "INVALID_ARGUMENT" if exc.status == 400 else "UNAUTHENTICATED"
        raise Refusal(exc.status, code, exc.message, challenge(exc.status)) from None
    if route.public:
        return identity
    if identity is None:
        raise Refusal(401, "UNAUTHENTICATED", "credentials required", challenge(401))
    if not allowed(identity, route.scopes):
        missing = [s for s in route.scopes if s not in identity.scopes]
        raise Refusal(403, "PERMISSION_DENIED", f"missing scope {missing[0]!r}")
    return identity
