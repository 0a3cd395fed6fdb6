"""The ``meshkit-admin`` service every Server carries: runtime switches and policy state, so an
operator can degrade a method of a running process (``meshkit switch``) without a restart."""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING, Any

from meshkit.errors import RpcError, StatusCode
from meshkit.protocol.metadata import AUTHORIZATION
from meshkit.rpc.context import current_context
from meshkit.rpc.hooks import process_breakers
from meshkit.rpc.service import Service, rpc

if TYPE_CHECKING:
    from meshkit.rpc.server import Server


class Admin(Service, name="meshkit-admin"):
    def __init__(self, server: Server, token: str | None = None) -> None:
        self._server = server
        self._expected = None if token is None else f"Bearer {token}"

    def _authorize(self) -> None:
        """Changes need the token; a server given none refuses every change (reads stay open)."""
        if self._expected is None:
            raise RpcError(
                StatusCode.PERMISSION_DENIED,
                "this server's meshkit-admin has no admin token, so it refuses every change: "
                "start it with --admin-token or $MESHKIT_ADMIN_TOKEN (Server(admin_token=...))",
            )
        ctx = current_context()
        given = ctx.metadata.get(AUTHORIZATION) if ctx is not None else None
        if not isinstance(given, str) or not hmac.compare_digest(given, self._expected):
            raise RpcError(
                StatusCode.UNAUTHENTICATED, "meshkit-admin needs 'authorization: Bearer TOKEN' (meshkit switch --token)"
            )

    @rpc
    async def switch(self, name: str, on: bool) -> dict[str, Any]:
        """Turn ``name`` ("service.method") on (answer with its fallback) or off; returns the
        switches now on and whether this process serves that method."""
        self._authorize()
        try:
            self._server.switches.set(name, on)
        except ValueError as exc:
            raise RpcError(StatusCode.INVALID_ARGUMENT, str(exc)) from None
        return {"switches": self._server.switches.snapshot(), **self._describe(name)}

    @rpc
    async def status(self) -> dict[str, Any]:
        """Switches, the breakers of every policy in this process (its clients' too) and this
        server's policy counters. Open to anyone who can reach the port: it changes nothing."""
        policy = self._server.policy
        state: dict[str, Any] = {"switches": self._server.switches.snapshot()}
        if policy is not None:
            state.update(policy.snapshot())
        breakers = process_breakers()
        if breakers:
            state["breakers"] = breakers
        return state

    def _describe(self, name: str) -> dict[str, Any]:
        service, _, method = name.partition(".")
        route = self._server._routes.get(service, {}).get(method)
        return {"served_here": route is not None, "has_fallback": route is not None and route.fallback is not None}
