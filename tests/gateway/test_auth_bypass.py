"""The auth-bypass suite: every way we know to reach a protected route without the right
credentials, through real HTTP (raw bytes where a client library would tidy the request up).
A bypass is any 2xx for a request that should not have one, or a service seeing an identity the
gateway did not prove. The count of attempts (K) is printed; bypasses must be 0."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.gateway.conftest import API_KEY, AUDIENCE, ISSUER, Factory, Keys

PROTECTED = "/api/orders/1"  # needs orders:read


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(**over: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {"sub": "alice", "iss": ISSUER, "aud": AUDIENCE, "exp": now + 300, "scope": "orders:read"}
    claims.update(over)
    return {k: v for k, v in claims.items() if v is not None}


def _unsigned(alg: str, claims: dict[str, Any]) -> str:
    header = _b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    return f"{header}.{_b64(json.dumps(claims).encode())}."


def _hmac_with(secret: bytes, claims: dict[str, Any], alg: str = "HS256") -> str:
    header = _b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    payload = _b64(json.dumps(claims).encode())
    signature = hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64(signature)}"


def bad_tokens(keys: Keys) -> dict[str, str]:
    now = int(time.time())
    good = keys.token(scope="orders:read")
    head, payload, signature = good.split(".")
    forged_payload = _b64(json.dumps(_claims(sub="admin", scope="orders:read orders:write admin")).encode())
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return {
        "alg none": _unsigned("none", _claims()),
        "alg None": _unsigned("None", _claims()),
        "alg NONE": _unsigned("NONE", _claims()),
        "alg none with a signature": _unsigned("none", _claims()) + signature,
        "HS256 signed with the RSA public key (key confusion)": _hmac_with(keys.rsa_public_pem, _claims()),
        "HS256 signed with the PEM text stripped": _hmac_with(keys.rsa_public_pem.strip(), _claims()),
        "HS256 with a guessed secret": _hmac_with(b"secret", _claims()),
        "expired": keys.token(exp=now - 3600, scope="orders:read"),
        "no exp": keys.token(exp=None, scope="orders:read"),
        "exp as a string": keys.token(exp=str(now + 300), scope="orders:read"),
        "not valid yet (nbf)": keys.token(nbf=now + 3600, scope="orders:read"),
        "wrong issuer": keys.token(iss="https://evil.test", scope="orders:read"),
        "no issuer": keys.token(iss=None, scope="orders:read"),
        "wrong audience": keys.token(aud="another-api", scope="orders:read"),
        "audience list without ours": keys.token(aud=["a", "b"], scope="orders:read"),
        "no audience": keys.token(aud=None, scope="orders:read"),
        "no subject": keys.token(sub=None, scope="orders:read"),
        "subject not a string": keys.token(sub=42, scope="orders:read"),
        "signed by another RSA key": keys.token(key=stranger, scope="orders:read"),
        "ES256 when only RS256 is allowed": keys.token(alg="ES256", scope="orders:read"),
        "payload swapped, signature kept": f"{head}.{forged_payload}.{signature}",
        "signature stripped": f"{head}.{payload}.",
        "signature of another token": f"{head}.{payload}.{keys.token(sub='bob').split('.')[2]}",
        "embedded jwk of the attacker's key": jwt.encode(
            _claims(),
            stranger,
            algorithm="RS256",
            headers={"jwk": json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(stranger.public_key()))},
        ),
        "jku pointing elsewhere": jwt.encode(
            _claims(), stranger, algorithm="RS256", headers={"jku": "http://evil.test/jwks", "kid": "1"}
        ),
        "two segments": f"{head}.{payload}",
        "garbage": "not-a-token",
        "huge": "a" * 20000,
    }


async def _raw(address: str, target: str, headers: list[tuple[str, str]] | None = None) -> tuple[int, bytes]:
    """One HTTP/1.1 request with the target sent exactly as given; (status, body)."""
    host, port = address.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    lines = [f"GET {target} HTTP/1.1", f"Host: {address}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in headers or []]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    await writer.drain()
    async with asyncio.timeout(10):
        data = await reader.read()
    writer.close()
    status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else 0
    return status, data.partition(b"\r\n\r\n")[2]


PATH_TRICKS = [
    "/public/../api/orders/1",
    "/public/orders/../../api/orders/1",
    "/public/orders/..%2F..%2Fapi%2Forders%2F1",
    "/public/orders/%2e%2e/%2e%2e/api/orders/1",
    "/public/orders/%2E%2E%2F%2E%2E%2Fapi/orders/1",
    "/public/./orders/../../api/orders/1",
    "//api/orders/1",
    "/api//orders/1",
    "/api/orders//1",
    "/api/./orders/1",
    "/api/orders/./1",
    "/./api/orders/1",
    "/api/orders%2F1",
    "/api%2Forders%2F1",
    "/api/orders/1%00",
    "/api/orders/1%2500",
    "/api/orders/1\\",
    "/api\\orders\\1",
    "/public%2F..%2Fapi/orders/1",
    "/public/orders/1/../../../api/orders/1",
    "/api/orders/1;/public/orders/1",
    "/API/orders/1",
    "/api/Orders/1",
    "/api/orders/%31",
    "/%61pi/orders/1",
    "/api/orders/1?x=/public/orders/1",
    "/api/orders/1#/public",
    "http://gateway/api/orders/1",
    "*",
]


async def test_no_bypass_of_k_attempts(gateway: Factory, keys: Keys, capsys: pytest.CaptureFixture[str]) -> None:
    attempts: list[tuple[str, int]] = []
    bypasses: list[str] = []

    def record(name: str, status: int, ok_expected: bool = False) -> None:
        attempts.append((name, status))
        if 200 <= status < 300 and not ok_expected:
            bypasses.append(f"{name}: {status}")

    no_scope = keys.token(scope="orders:write")  # a valid token, but without orders:read
    async with gateway() as http:
        address = http.gateway.address  # type: ignore[attr-defined]
        # Credentials: missing, malformed, ambiguous.
        for name, headers in {
            "no Authorization": {},
            "empty Authorization": {"authorization": ""},
            "Bearer and nothing": {"authorization": "Bearer"},
            "Bearer and a space": {"authorization": "Bearer "},
            "Basic credentials": {"authorization": "Basic " + base64.b64encode(b"admin:admin").decode()},
            "unknown scheme": {"authorization": f"Token {API_KEY}"},
            "wrong API key": {"x-api-key": API_KEY[:-1] + "x"},
            "API key prefix": {"x-api-key": API_KEY[:8]},
            "API key in another case": {"x-api-key": API_KEY.upper()},
            "API key with a trailing space": {"x-api-key": API_KEY + " x"},
            "token without the scope": {"authorization": f"Bearer {no_scope}"},
        }.items():
            status, _ = await _raw(address, PROTECTED, list(headers.items()))
            record(name, status)
        record("API key in the query", (await http.get(PROTECTED, params={"api_key": API_KEY})).status_code)
        record("token in the query", (await http.get(PROTECTED, params={"access_token": keys.token()})).status_code)
        for name, token in bad_tokens(keys).items():
            record(
                f"token: {name}", (await http.get(PROTECTED, headers={"authorization": f"Bearer {token}"})).status_code
            )
        # Two credentials in one request: refused, even when one of them is good.
        good = f"Bearer {keys.token(scope='orders:read')}"
        for name, pairs in {
            "two Authorization headers, bad then good": [("Authorization", "Bearer junk"), ("Authorization", good)],
            "two Authorization headers, good then bad": [("Authorization", good), ("Authorization", "Bearer junk")],
            "two good Authorization headers": [("Authorization", good), ("Authorization", good)],
            "Authorization and API key": [("Authorization", "Bearer junk"), ("X-API-Key", API_KEY)],
        }.items():
            status, _ = await _raw(address, PROTECTED, pairs)
            record(name, status)
        # Path tricks, without credentials: none may reach the protected route.
        for target in PATH_TRICKS:
            status, _ = await _raw(address, target)
            record(f"path {target}", status)
        # Spoofed identity: the service must see the identity the gateway proved, nothing else.
        spoof = [
            ("X-API-Key", API_KEY),
            ("auth-subject", "admin"),
            ("auth-scopes", "admin"),
            ("auth-method", "jwt"),
            ("X-Auth-Subject", "admin"),
            ("X-Forwarded-User", "admin"),
            ("X-User", "admin"),
            ("X-Tenant", "acme"),
        ]
        status, body = await _raw(address, "/api/whoami", spoof)
        attempts.append(("spoofed identity headers", status))
        seen = json.loads(body)
        if status != 200 or seen["auth-subject"] != "ci" or seen["auth-scopes"] != "orders:read":
            bypasses.append(f"spoofed identity reached the service: {seen}")
        if seen.get("auth-method") != "api-key" or seen.get("x-user") is not None:
            bypasses.append(f"spoofed identity reached the service: {seen}")
        # The controls: the same routes with the right credentials do answer (the suite can fail).
        ok_key = (await http.get(PROTECTED, headers={"x-api-key": API_KEY})).status_code
        ok_jwt = (await http.get(PROTECTED, headers={"authorization": good})).status_code
    with capsys.disabled():
        print(f"\nauth-bypass suite: K = {len(attempts)} attempts, {len(bypasses)} bypasses")
    assert (ok_key, ok_jwt) == (200, 200)
    assert bypasses == []
    assert len(attempts) >= 70
    # Every refusal is a clear client error, never a crash of the gateway.
    assert all(status < 500 for _, status in attempts), [a for a in attempts if a[1] >= 500]
