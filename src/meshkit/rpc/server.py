"""``Server``: serves services on one port; its configuration, start and graceful stop,
registration and health.

The work per call lives beside it: the route table and switches in routes.py, the REQUEST path in
dispatch.py (the hot path), server streams in streams.py, answers in answers.py. This module only
puts them together and runs the parts that are not per call.
"""

from __future__ import annotations

import asyncio
import logging
import ssl as _ssl
from collections.abc import Callable, Sequence

import msgspec

from meshkit.discovery import open_registry
from meshkit.discovery.health import HealthMonitor, HealthThresholds
from meshkit.discovery.instance import Instance
from meshkit.discovery.registry import Registry
from meshkit.protocol.keepalive import KeepaliveConfig
from meshkit.protocol.limits import Limits
from meshkit.rpc.access_log import access_log
from meshkit.rpc.dispatch import Dispatcher
from meshkit.rpc.eager import install
from meshkit.rpc.hooks import ServerGovernance, load_policy
from meshkit.rpc.middleware import Middleware, default_front
from meshkit.rpc.routes import ADMIN_SERVICE, build_routes, make_invoker, switch_route
from meshkit.rpc.service import Service
from meshkit.rpc.switches import Switches, process_switches
from meshkit.transport.server import Listener

__all__ = [
    "ADMIN_SERVICE",
    "DEFAULT_HEALTH",
    "SERVER_KEEPALIVE",
    "Server",
    "default_server_middleware",
    "make_invoker",
]

log = logging.getLogger("meshkit.server")
#: Self-checks a registered server runs by default: only event-loop lag (1 s); memory and disk are
#: opt-in because sensible limits depend on the deployment.
DEFAULT_HEALTH = HealthThresholds()
#: Servers ping idle clients less often than clients ping servers: a dead client costs little.
SERVER_KEEPALIVE = KeepaliveConfig(interval=30.0, timeout=10.0)


def default_server_middleware() -> list[Middleware]:
    """The chain a Server gets when ``middleware`` is not given: tracing when the process has
    it configured, then the access log."""
    return [*default_front("server"), access_log("meshkit.access")]


class Server:
    """Serves one or more :class:`Service` instances on one TCP port.

    ``middleware`` replaces the default chain (``[]`` for none); ``policy`` (a
    :class:`~meshkit.policy.Policy`, or any :class:`~meshkit.rpc.hooks.ServerGovernance`, or the
    path of a policy TOML file) adds rate limits, bulkheads, load shedding and fallbacks after it.
    ``switches`` (default: the process's) turn methods into their fallbacks at runtime;
    ``admin=True`` serves the ``meshkit-admin`` service that ``meshkit switch`` talks to, on this
    same port: changes need ``admin_token`` as
    ``authorization: Bearer TOKEN`` metadata, and a server given no token refuses every change
    (its status stays readable). ``limits`` bound what clients may send; ``keepalive`` finds dead
    clients; ``ssl`` turns on TLS (a context with ``verify_mode=CERT_REQUIRED`` makes it mutual TLS).
    """

    def __init__(
        self,
        services: Sequence[Service],
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        middleware: Sequence[Middleware] | None = None,
        limits: Limits | None = None,
        keepalive: KeepaliveConfig | None = SERVER_KEEPALIVE,
        ssl: _ssl.SSLContext | None = None,
        registry: str | None = None,
        weight: int = 100,
        zone: str = "",
        health: HealthThresholds | None = DEFAULT_HEALTH,
        deadline_resolution: float = 0.005,
        policy: ServerGovernance | str | None = None,
        switches: Switches | None = None,
        admin: bool = False,
        admin_token: str | None = None,
    ) -> None:
        if not services:
            raise ValueError("a Server needs at least one service")
        self.policy: ServerGovernance | None = load_policy(policy) if isinstance(policy, str) else policy
        if switches is None:
            switches = self.policy.switches if self.policy is not None else process_switches()
        elif self.policy is not None and switches is not self.policy.switches:
            for name, on in self.policy.config.switches.items():  # the policy file's, on our own set
                switches.set(name, on)
        self.switches = switches
        services = list(services)
        if admin:
            from meshkit.rpc.admin import Admin

            services.append(Admin(self, admin_token))
        self._registry: Registry | None = open_registry(registry) if registry is not None else None
        self.instances: list[Instance] = []
        self.weight = weight
        self.zone = zone
        self._health = (
            HealthMonitor(health, self._health_changed) if health is not None and registry is not None else None
        )
        self.host = host
        self._port = port
        self.limits = limits or Limits()
        self._middleware = list(default_server_middleware() if middleware is None else middleware)
        self._unguarded = list(self._middleware)  # the admin service's chain: never limited or shed
        if self.policy is not None:
            self._middleware.append(self.policy.server_middleware())
        self._routes = build_routes(services, self._middleware, self._unguarded)
        self.services = services
        self._unsubscribe: Callable[[], None] | None = None
        self.registry = registry
        self._dispatcher = Dispatcher(self._routes, self.policy)
        follow = getattr(self.policy, "on_shedder", None)
        if follow is not None:  # a policy that can turn shedding on or off live tells the dispatcher
            follow(self._dispatcher.use_shedder)
        #: What the listener calls with each REQUEST (an attribute so a benchmark can wrap it).
        self._dispatch = self._dispatcher.dispatch
        self._listener = Listener(self._dispatch, limits=self.limits, keepalive=keepalive, ssl=ssl)
        self._deadline_resolution = deadline_resolution
        self._started = False

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return self._listener.port or self._port

    @property
    def unhealthy_reasons(self) -> list[str]:
        """Why the health self-checks find this server unwell (empty while healthy or unchecked)."""
        health = self._health
        return [] if health is None or health.healthy else list(health.reasons)

    @property
    def serving(self) -> bool:
        """Started and not stopping: listening and (with a registry) registered."""
        return self._started

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    async def start(self) -> None:
        if self._started:
            raise RuntimeError("server already started")
        install()  # asyncio.current_task() works inside eager handler steps
        if self.policy is not None:
            # Before listening: a policy that cannot start (a live one with no configuration
            # center and no copy of it) leaves nothing serving without its rules.
            await self.policy.start()
        try:
            self._dispatcher.open(asyncio.get_running_loop(), self._deadline_resolution)
            await self._listener.start(self.host, self._port)
        except BaseException:
            if self.policy is not None:
                await self.policy.stop()
            raise
        self._started = True
        for name in list(self.switches.on):
            self._switched(name, True)
        self._unsubscribe = self.switches.subscribe(self._switched)
        log.info("serving %s on %s", ", ".join(self._routes), self.address)
        if self._registry is not None:
            # Registered only once listening, so nobody is sent here before we can answer.
            self.instances = [
                Instance(service=name, host=self.host, port=self.port, weight=self.weight, zone=self.zone)
                for name in self._routes
                if name != ADMIN_SERVICE
            ]
            for instance in self.instances:
                await self._registry.register(instance)
            if self._health is not None:
                self._health.start()

    async def stop(self, grace: float = 5.0) -> None:
        """Stop accepting, send GOAWAY, wait up to ``grace`` seconds for calls in flight, then
        cancel the rest. Calls the clients had not yet sent go to other instances."""
        if not self._started:
            return
        self._started = False
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self.policy is not None:
            await self.policy.stop()
        if self._health is not None:
            await self._health.stop()
        if self._registry is not None:
            # Deregistered *before* draining: clients stop choosing us while we finish what we have.
            for instance in self.instances:
                try:
                    await self._registry.deregister(instance)
                except Exception as exc:  # noqa: BLE001 - the lease will expire; draining must go on
                    log.warning("could not deregister %s: %s", instance.id, exc)
            await self._registry.close()  # stops heartbeats: this server created it from the URL
        cancelled = await self._listener.stop(grace)
        self._dispatcher.close()
        if cancelled:
            log.warning("stopped with %d calls cancelled after the %.1fs grace period", cancelled, grace)

    async def _health_changed(self, healthy: bool, reasons: list[str]) -> None:
        """A self-check changed: tell the registry, so clients stop (or resume) choosing us."""
        if healthy:
            log.info("healthy again; back in rotation")
        else:
            log.warning("unhealthy (%s); asking the registry to take us out of rotation", "; ".join(reasons))
        assert self._registry is not None
        self.instances = [msgspec.structs.replace(i, healthy=healthy) for i in self.instances]
        for instance in self.instances:
            try:
                await self._registry.register(instance)
            except Exception as exc:  # noqa: BLE001 - the next change tries again
                log.warning("could not update %s in the registry: %s", instance.id, exc)

    async def __aenter__(self) -> Server:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def connections(self) -> int:
        return len(self._listener.connections)

    # -- switches ----------------------------------------------------------------------------
    def _switched(self, name: str, on: bool) -> None:
        """A switch changed: the method (if served here) now answers with its fallback, or back."""
        switch_route(self._routes, self._middleware, name, on)
