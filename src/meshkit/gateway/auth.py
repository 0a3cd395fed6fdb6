"""Who is calling: API keys and JWTs, checked before anything is forwarded.

Every decision fails closed. Credentials are read from exactly one place: two Authorization
headers, or an Authorization header and an API-key header, are refused (400) rather than
guessed between (proxies and frameworks disagree about which of two headers wins, which is how a
checked credential and a used one come apart). JWTs are verified with PyJWT against an explicit
algorithm list from one family (config.Jwt), so ``alg: none`` and a public key used as an HMAC
secret are both refused by construction; ``exp`` is required, ``nbf``, ``iss`` and ``aud`` are
checked with a small leeway.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

from meshkit.gateway.config import Auth, GatewayConfigError

#: Longer Authorization or API-key values are refused before any parsing.
MAX_CREDENTIAL_LENGTH = 8192


@dataclass(frozen=True)
class Identity:
    """A checked caller: ``subject`` (a token's ``sub`` or an API key's name), its scopes, and
    how it was proven (``jwt`` or ``api-key``)."""

    subject: str
    scopes: frozenset[str]
    method: str


class AuthError(Exception):
    """A refused request: ``status`` 400 (ambiguous credentials), 401 (none or bad) or 403
    (good, but not allowed); the message is safe to show the caller."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Authenticator:
    def __init__(self, config: Auth, base: Path = Path(".")) -> None:
        self.config = config
        self._keys: dict[str, tuple[str, frozenset[str]]] = {}
        for entry in config.api_keys:
            digest = entry.sha256 if entry.sha256 is not None else _sha256(entry.key or "")
            if digest in self._keys:
                raise GatewayConfigError(f"api key {entry.name!r} is the same key as {self._keys[digest][0]!r}")
            self._keys[digest] = (entry.name, frozenset(entry.scopes))
        self._api_key_header = config.api_key_header.lower().encode("latin-1")
        self._jwt_key: Any = None
        if config.jwt is not None:
            key = config.jwt.key(base)
            if not config.jwt.hmac:
                key = _public_key(key)
                _check_key_fits(key, config.jwt.algorithms)
            self._jwt_key = key

    @property
    def enabled(self) -> bool:
        return bool(self._keys) or self._jwt_key is not None

    def authenticate(self, headers: list[tuple[bytes, bytes]]) -> Identity | None:
        """The identity the request proves, None when it carries no credentials at all, or
        :class:`AuthError` for credentials that are ambiguous or do not check out."""
        authorization = [v for k, v in headers if k == b"authorization"]
        api_keys = [v for k, v in headers if k == self._api_key_header]
        if len(authorization) + len(api_keys) > 1:
            raise AuthError(400, "more than one credential (Authorization or API-key header) in one request")
        if not authorization and not api_keys:
            return None
        raw = (authorization or api_keys)[0]
        if len(raw) > MAX_CREDENTIAL_LENGTH:
            raise AuthError(401, "credential too long")
        try:
            value = raw.decode("ascii")
        except UnicodeDecodeError:
            raise AuthError(401, "credential is not ASCII") from None
        if api_keys:
            return self._api_key(value)
        scheme, _, credential = value.strip().partition(" ")
        scheme = scheme.lower()
        credential = credential.strip()
        if scheme == "bearer" and credential:
            return self._jwt(credential)
        if scheme == "apikey" and credential:
            return self._api_key(credential)
        raise AuthError(401, "Authorization must be 'Bearer <jwt>' or 'ApiKey <key>'")

    def _api_key(self, key: str) -> Identity:
        found = self._keys.get(_sha256(key)) if self._keys else None
        if found is None:
            raise AuthError(401, "unknown API key")
        name, scopes = found
        return Identity(name, scopes, "api-key")

    def _jwt(self, token: str) -> Identity:
        config = self.config.jwt
        if config is None:
            raise AuthError(401, "bearer tokens are not accepted here")
        require = ["exp"]
        if config.issuer is not None:
            require.append("iss")
        if config.audience is not None:
            require.append("aud")
        try:
            claims = jwt.decode(
                token,
                self._jwt_key,
                algorithms=list(config.algorithms),
                audience=config.audience,
                issuer=config.issuer,
                leeway=config.leeway,
                options={"require": require, "verify_signature": True},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError(401, "token expired") from None
        except jwt.ImmatureSignatureError:
            raise AuthError(401, "token not valid yet (nbf)") from None
        except jwt.InvalidAudienceError:
            raise AuthError(401, "token audience is not this gateway") from None
        except jwt.InvalidIssuerError:
            raise AuthError(401, "token issuer is not trusted") from None
        except jwt.MissingRequiredClaimError as exc:
            raise AuthError(401, f"token lacks the {exc.claim!r} claim") from None
        except jwt.InvalidAlgorithmError:
            raise AuthError(401, "token algorithm is not allowed") from None
        except (jwt.InvalidTokenError, jwt.PyJWTError, TypeError, ValueError):
            # PyJWTError: InvalidKeyError and kin; TypeError/ValueError: a key that cannot do the
            # algorithm a token names. Either way, nothing this gateway trusts signed it.
            raise AuthError(401, "invalid token") from None
        for name in ("exp", "nbf", "iat"):
            # RFC 7519 NumericDate is a JSON number; PyJWT also takes "1700000000" (a string).
            value = claims.get(name)
            if value is not None and (type(value) is bool or not isinstance(value, int | float)):
                raise AuthError(401, f"token claim {name!r} is not a number")
        subject = claims.get(config.subject_claim)
        if not isinstance(subject, str) or not subject:
            raise AuthError(401, f"token lacks a string {config.subject_claim!r} claim")
        return Identity(subject, _scopes(claims.get(config.scope_claim)), "jwt")


def _scopes(value: object) -> frozenset[str]:
    """OAuth 2 ``scope`` is a space-separated string; some issuers send a list (``scp``)."""
    if isinstance(value, str):
        return frozenset(value.split())
    if isinstance(value, list):
        # A scope holding whitespace would read as several once joined into auth-scopes: not one.
        return frozenset(v for v in value if isinstance(v, str) and v and v == "".join(v.split()))
    return frozenset()


def _sha256(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _public_key(pem: str | bytes) -> Any:
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    data = pem if isinstance(pem, bytes) else pem.encode()
    try:
        return load_pem_public_key(data)
    except ValueError as exc:
        raise GatewayConfigError(f"auth.jwt.public_key_file is not a PEM public key: {exc}") from None


def _check_key_fits(key: Any, algorithms: list[str]) -> None:
    """Every allowed algorithm must be one the public key can verify (an RSA key: RS*/PS*, an EC
    key: ES*, an Ed25519/Ed448 key: EdDSA), so no token can name one that cannot be checked."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

    if isinstance(key, rsa.RSAPublicKey):
        fits = {a for a in algorithms if a[:2] in ("RS", "PS")}
    elif isinstance(key, ec.EllipticCurvePublicKey):
        curve = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}.get(key.curve.name)
        fits = {a for a in algorithms if a == curve}
    elif isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        fits = {a for a in algorithms if a == "EdDSA"}
    else:
        fits = set()
    wrong = [a for a in algorithms if a not in fits]
    if wrong:
        raise GatewayConfigError(
            f"auth.jwt.algorithms: the public key ({type(key).__name__}) cannot verify {', '.join(wrong)}"
        )


def allowed(identity: Identity, required: list[str]) -> bool:
    """Whether ``identity`` holds every scope ``required``."""
    return all(scope in identity.scopes for scope in required)


def same_key(a: str, b: str) -> bool:
    """Constant-time comparison (for callers comparing secrets outside this module)."""
    return hmac.compare_digest(a.encode(), b.encode())
