"""The gateway's config: one TOML file (``meshkit gateway --config gateway.toml``), checked
entirely when it is read, so a bad file stops the gateway at start with a message naming the
field, never at the first request. docs/gateway.md shows a complete example.

Deny by default: every route needs credentials unless it says ``public = true``; a route that
asks for scopes needs an ``[auth]`` section that can grant them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import msgspec

from meshkit.gateway.routing import compile_template

HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
#: Algorithms a gateway accepts tokens in. ``none`` is not one of them, whatever a config says.
HMAC_ALGORITHMS = ("HS256", "HS384", "HS512")
PUBLIC_KEY_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
#: Metadata keys the gateway itself sets from the checked credentials; never taken from a request.
IDENTITY_KEYS = ("auth-subject", "auth-scopes", "auth-method")
#: Headers that may not be forwarded as metadata: identity, credentials, and keys meshkit gives a
#: meaning (a client choosing its own ``caller`` would choose its per-caller limits).
RESERVED_METADATA = (
    *IDENTITY_KEYS,
    "authorization",
    "cookie",
    "caller",
    "service",
    "method",
    "deadline",
    "credit",
    "request-id",
    "traceparent",
    "tracestate",
)
#: A forwarded header's value is refused (431) over this many bytes: metadata is small by design
#: (a server's limit is 16 KiB for all of it) and one caller's header must not break a connection
#: other callers' calls share.
MAX_FORWARDED_VALUE = 1024


class GatewayConfigError(ValueError):
    """A gateway config that cannot be used; the message names the file and the field."""


class _Strict(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    pass


class Route(_Strict):
    """``method`` + ``path`` (a template: ``/api/orders/{order_id}``) to ``call`` (``service.method``).

    Path parameters, query parameters and the JSON body's fields become the method's arguments.
    ``status`` is the HTTP status of a success (201 for a create, say); ``timeout`` the call's
    budget in seconds (default: the gateway's ``call_timeout``)."""

    method: str
    path: str
    call: str
    scopes: list[str] = []
    public: bool = False
    status: int = 200  # 204: answered without a body
    timeout: float | None = None
    summary: str | None = None
    #: The parameter the whole JSON body becomes (``body = "order"`` for ``place(order: Order)``);
    #: by default the body is an object whose fields are parameters.
    body: str | None = None

    def __post_init__(self) -> None:
        self.method = self.method.upper()
        if self.method not in HTTP_METHODS:
            raise GatewayConfigError(
                f"route {self.path}: method {self.method!r} is not one of {', '.join(HTTP_METHODS)}"
            )
        try:
            compile_template(self.path)
        except ValueError as exc:
            raise GatewayConfigError(str(exc)) from None
        service, dot, method = self.call.partition(".")
        if not dot or not service or not method:
            raise GatewayConfigError(
                f"route {self.method} {self.path}: call must be 'service.method', got {self.call!r}"
            )
        if self.public and self.scopes:
            raise GatewayConfigError(f"route {self.method} {self.path} is public and asks for scopes: choose one")
        if not 200 <= self.status <= 299:
            raise GatewayConfigError(f"route {self.method} {self.path}: status must be a 2xx, got {self.status}")
        if self.timeout is not None and self.timeout <= 0:
            raise GatewayConfigError(f"route {self.method} {self.path}: timeout must be > 0")

    @property
    def service(self) -> str:
        return self.call.partition(".")[0]

    @property
    def rpc_method(self) -> str:
        return self.call.partition(".")[2]


class ApiKey(_Strict):
    """An API key: ``sha256`` (hex of the key's SHA-256; keeps the key itself out of the file)
    or ``key``; ``name`` identifies the caller (forwarded as ``auth-subject``)."""

    name: str
    scopes: list[str] = []
    sha256: str | None = None
    key: str | None = None

    def __post_init__(self) -> None:
        if (self.sha256 is None) == (self.key is None):
            raise GatewayConfigError(f"api key {self.name!r}: give exactly one of sha256 and key")
        if self.sha256 is not None:
            self.sha256 = self.sha256.lower()
            if len(self.sha256) != 64 or any(c not in "0123456789abcdef" for c in self.sha256):
                raise GatewayConfigError(f"api key {self.name!r}: sha256 must be 64 hex digits")
        if self.key is not None and len(self.key) < 16:
            raise GatewayConfigError(f"api key {self.name!r}: a key must be at least 16 characters")


class Jwt(_Strict):
    """Bearer JWTs. ``algorithms`` is an explicit allow-list from one family: HMAC (``HS*``, with
    ``secret`` or ``secret_env``) or public key (``RS*``, ``PS*``, ``ES*``, ``EdDSA``, with
    ``public_key_file``); never both, so a public key can never be used as an HMAC secret (the
    HS/RS confusion attack). ``exp`` is required; ``nbf``, ``iss`` and ``aud`` are checked."""

    algorithms: list[str]
    issuer: str | None = None
    audience: str | None = None
    secret: str | None = None
    secret_env: str | None = None
    public_key_file: str | None = None
    leeway: float = 30.0
    scope_claim: str = "scope"
    subject_claim: str = "sub"

    def __post_init__(self) -> None:
        if not self.algorithms:
            raise GatewayConfigError("auth.jwt.algorithms must list at least one algorithm")
        unknown = [a for a in self.algorithms if a not in HMAC_ALGORITHMS + PUBLIC_KEY_ALGORITHMS]
        if unknown:
            raise GatewayConfigError(
                f"auth.jwt.algorithms: {', '.join(map(repr, unknown))} not allowed; "
                f"use {', '.join(HMAC_ALGORITHMS)} or {', '.join(PUBLIC_KEY_ALGORITHMS)}"
            )
        hmac = [a for a in self.algorithms if a in HMAC_ALGORITHMS]
        if hmac and len(hmac) != len(self.algorithms):
            raise GatewayConfigError(
                "auth.jwt.algorithms mixes HMAC (HS*) and public-key algorithms: choose one family"
            )
        if hmac:
            if (self.secret is None) == (self.secret_env is None):
                raise GatewayConfigError("auth.jwt with HS* algorithms needs exactly one of secret and secret_env")
            if self.public_key_file is not None:
                raise GatewayConfigError("auth.jwt with HS* algorithms takes a secret, not public_key_file")
        else:
            if self.public_key_file is None:
                raise GatewayConfigError("auth.jwt with public-key algorithms needs public_key_file")
            if self.secret is not None or self.secret_env is not None:
                raise GatewayConfigError("auth.jwt with public-key algorithms takes public_key_file, not a secret")
        if self.leeway < 0:
            raise GatewayConfigError("auth.jwt.leeway must be >= 0")

    @property
    def hmac(self) -> bool:
        return self.algorithms[0] in HMAC_ALGORITHMS

    def key(self, base: Path) -> str | bytes:
        """The verification key: the secret, or the public key file's bytes (relative to the config)."""
        if self.secret is not None:
            return self.secret.encode()
        if self.secret_env is not None:
            value = os.environ.get(self.secret_env)
            if not value:
                raise GatewayConfigError(f"auth.jwt.secret_env: environment variable {self.secret_env} is not set")
            return value.encode()
        assert self.public_key_file is not None
        path = base / self.public_key_file
        try:
            return path.read_bytes()
        except OSError as exc:
            raise GatewayConfigError(f"auth.jwt.public_key_file: cannot read {path}: {exc.strerror}") from None


class Auth(_Strict):
    api_keys: list[ApiKey] = []
    jwt: Jwt | None = None
    #: Where an API key is read from (``Authorization: ApiKey <key>`` is accepted too).
    api_key_header: str = "x-api-key"

    def __post_init__(self) -> None:
        self.api_key_header = self.api_key_header.lower()
        if self.api_key_header in ("authorization", "cookie", "host", "content-type", "content-length"):
            raise GatewayConfigError(f"auth.api_key_header cannot be {self.api_key_header!r}")


class Bucket(_Strict):
    rate: float
    burst: float | None = None

    def __post_init__(self) -> None:
        if self.rate <= 0:
            raise GatewayConfigError(f"a limit's rate must be > 0, got {self.rate}")
        if self.burst is not None and self.burst < 1:
            raise GatewayConfigError(f"a limit's burst must be >= 1, got {self.burst}")

    @property
    def size(self) -> float:
        return self.burst if self.burst is not None else max(1.0, self.rate)


class Limits(_Strict):
    """Token buckets per caller: ``per_key`` (an API key's name or a token's subject) and
    ``per_ip``; in Redis (shared by every gateway) when ``redis`` is set."""

    per_key: Bucket | None = None
    per_ip: Bucket | None = None
    redis: str | None = None
    #: Buckets kept in memory at most (the least recently used go first): spoofed addresses or
    #: subjects cannot grow the table without bound.
    max_tracked: int = 100_000

    def __post_init__(self) -> None:
        if self.max_tracked < 1:
            raise GatewayConfigError(f"limits.max_tracked must be >= 1, got {self.max_tracked}")


class Cors(_Strict):
    allow_origins: list[str] = []
    allow_methods: list[str] = msgspec.field(default_factory=lambda: list(HTTP_METHODS))
    allow_headers: list[str] = msgspec.field(
        default_factory=lambda: ["authorization", "content-type", "x-api-key", "x-request-id", "traceparent"]
    )
    expose_headers: list[str] = msgspec.field(default_factory=lambda: ["x-request-id", "retry-after"])
    allow_credentials: bool = False
    max_age: int = 600

    def __post_init__(self) -> None:
        if self.allow_credentials and "*" in self.allow_origins:
            raise GatewayConfigError("cors: allow_credentials cannot be used with allow_origins = ['*']")


class Gateway(_Strict):
    host: str = "127.0.0.1"
    port: int = 8080
    registry: str | None = None
    #: Service classes ("module:Class") whose type hints map arguments and make the OpenAPI.
    services: list[str] = []
    max_body_bytes: int = 1 << 20
    header_timeout: float = 10.0
    #: Seconds for a request's body to arrive once its head has (408 after).
    body_timeout: float = 10.0
    #: A request head (request line and headers) over this many bytes is refused (431).
    max_head_bytes: int = 32 * 1024
    idle_timeout: float = 5.0
    call_timeout: float = 10.0
    #: Seconds a client may read nothing of an answer before its connection is closed.
    write_timeout: float = 30.0
    #: Requests handled at once; more are refused at once with 503 and Retry-After.
    max_requests_in_progress: int = 4096
    #: Request headers forwarded as call metadata (lowercase names); identity is never among them.
    forward_headers: list[str] = []
    #: Behind a proxy you trust: take the client address from X-Forwarded-For's last hop.
    trust_forwarded: bool = False
    #: Obey an incoming traceparent's sampled flag (false: continue the trace, but sample with
    #: the gateway's own ratio, so that callers cannot force every request to be traced).
    trust_traceparent: bool = True
    title: str = "meshkit gateway"
    #: Serve the routes' OpenAPI at /openapi.json and a page rendering it at /docs.
    openapi: bool = True
    #: A policy file (docs/resilience.md) for the gateway's calls, relative to this file; without
    #: one, every service gets per-instance breakers and budgeted retries (app.GATEWAY_POLICY).
    policy: str | None = None
    log_level: Literal["debug", "info", "warning", "error"] = "warning"

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise GatewayConfigError(f"gateway.port must be 0..65535, got {self.port}")
        for name in ("max_body_bytes",):
            if getattr(self, name) < 0:
                raise GatewayConfigError(f"gateway.{name} must be >= 0")
        if self.max_requests_in_progress < 1:
            raise GatewayConfigError(
                f"gateway.max_requests_in_progress must be >= 1, got {self.max_requests_in_progress}"
            )
        if self.max_head_bytes < 1024:
            raise GatewayConfigError(f"gateway.max_head_bytes must be >= 1024, got {self.max_head_bytes}")
        for name in ("header_timeout", "body_timeout", "idle_timeout", "call_timeout", "write_timeout"):
            if getattr(self, name) <= 0:
                raise GatewayConfigError(f"gateway.{name} must be > 0")
        self.forward_headers = [h.lower() for h in self.forward_headers]
        refused = [h for h in self.forward_headers if h in RESERVED_METADATA or h.startswith("auth-")]
        if refused:
            raise GatewayConfigError(f"gateway.forward_headers may not forward {', '.join(refused)}")


class GatewayConfig(_Strict):
    gateway: Gateway = msgspec.field(default_factory=Gateway)
    targets: dict[str, str] = {}
    routes: list[Route] = []
    auth: Auth = msgspec.field(default_factory=Auth)
    limits: Limits = msgspec.field(default_factory=Limits)
    cors: Cors | None = None

    def check(self) -> None:
        """Checks across sections (each section checked itself when it was read)."""
        if not self.routes:
            raise GatewayConfigError("no [[routes]]: the gateway would answer nothing")
        if self.gateway.registry is None:
            missing = sorted({r.service for r in self.routes} - set(self.targets))
            if missing:
                raise GatewayConfigError(
                    f"routes call {', '.join(missing)} but there is no gateway.registry nor [targets] entry for them"
                )
        if self.auth.api_key_header in self.gateway.forward_headers:
            raise GatewayConfigError(
                f"gateway.forward_headers may not forward the API key header ({self.auth.api_key_header})"
            )
        grantable = bool(self.auth.api_keys) or self.auth.jwt is not None
        for route in self.routes:
            if self.gateway.openapi and (
                route.path.rstrip("/") in ("/openapi.json", "/docs") or route.path.startswith("/docs/assets/")
            ):
                raise GatewayConfigError(
                    f"route {route.method} {route.path}: that path serves the OpenAPI (gateway.openapi)"
                )
            if not route.public and not grantable:
                raise GatewayConfigError(
                    f"route {route.method} {route.path} needs credentials but [auth] has no api_keys and no jwt "
                    "(mark it public = true if it really is)"
                )


def parse(data: bytes | str, source: str = "<gateway config>") -> GatewayConfig:
    try:
        config = msgspec.toml.decode(data, type=GatewayConfig)
        config.check()
    except msgspec.ValidationError as exc:
        raise GatewayConfigError(f"{source}: {exc}") from None
    except msgspec.DecodeError as exc:
        raise GatewayConfigError(f"{source}: not valid TOML: {exc}") from None
    except GatewayConfigError as exc:
        raise GatewayConfigError(f"{source}: {exc}") from None
    return config


def load(path: str | Path) -> GatewayConfig:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise GatewayConfigError(f"cannot read gateway config {path}: {exc.strerror}") from None
    return parse(data, str(path))
