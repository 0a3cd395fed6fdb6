"""``meshkit run``: serve Service classes, with the policy file, the admin service and token,
metrics, tracing and the admin HTTP port; SIGTERM drains, SIGHUP re-reads the switches."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import signal
import sys
from typing import Any

from meshkit.cli.common import EXIT_USAGE, cannot_listen, say, setup_logging, start_admin
from meshkit.cli.tokens import write_admin_token
from meshkit.errors import ConfigError, ConfigUnavailable
from meshkit.rpc.server import Server
from meshkit.rpc.service import Service
from meshkit.transport.loop import run as run_loop

REGISTRY_SCHEMES = "memory://, meshkit://HOST:PORT, etcd://HOST:PORT, zk://HOST:PORT"


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``run`` command's arguments."""
    p = sub.add_parser("run", help="serve one or more Service classes")
    p.add_argument("service", nargs="+", help="MODULE:Class of a meshkit Service (several allowed)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=7001, help="port to bind (0 picks a free one; default 7001)")
    p.add_argument("--grace", type=float, default=5.0, help="seconds in-flight calls get on SIGTERM (default 5)")
    p.add_argument("--registry", default=None, help=f"register in this registry ({REGISTRY_SCHEMES})")
    p.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    p.add_argument("--no-access-log", action="store_true", help="do not log a line per call")
    p.add_argument(
        "--policy",
        default=None,
        help="resilience policy: a TOML file (SIGHUP re-reads its [switches]) or a configuration store URL "
        "whose key is followed live (etcd://HOST:PORT/meshkit/config/policy/order, meshkit://HOST:PORT/KEY, "
        "file:///dir#KEY)",
    )
    p.add_argument("--instance-id", default=None, help="this instance's id for gray releases (default host:pid)")
    p.add_argument("--zone", default=None, help="this instance's zone for gray releases ($MESHKIT_ZONE)")
    p.add_argument(
        "--label", action="append", default=[], metavar="NAME=VALUE", help="a label for gray releases (repeatable)"
    )
    p.add_argument(
        "--no-admin-service",
        action="store_true",
        help="do not serve the meshkit-admin RPC service (what meshkit switch talks to) on the service port",
    )
    p.add_argument(
        "--admin-port",
        type=int,
        default=None,
        help="serve /metrics, /healthz, /readyz on this HTTP port (off by default)",
    )
    p.add_argument("--no-metrics", action="store_true", help="do not count and time calls (Prometheus metrics)")
    p.add_argument(
        "--trace",
        choices=["otlp", "zipkin", "console", "none"],
        default=None,
        help="export traces (default $OTEL_TRACES_EXPORTER, else none); endpoint and sampling from OTEL_* variables",
    )
    p.add_argument(
        "--log-format", choices=["text", "json"], default="text", help="json: one object a line, with trace ids"
    )
    p.add_argument(
        "--admin-token",
        default=None,
        help="the token meshkit switch must give ($MESHKIT_ADMIN_TOKEN; default: a generated one, its file printed)",
    )


def run(args: argparse.Namespace) -> int:
    setup_logging(args.log_level, not args.no_access_log, args.log_format)
    return run_loop(_serve(args))


def _load_service(spec: str) -> Service:
    """``package.module:Class`` -> an instance of that Service class (a bad name is one line)."""
    from meshkit.rpc.loading import ServiceImportError, import_service

    try:
        obj = import_service(spec)
    except ServiceImportError as exc:
        raise SystemExit(f"meshkit: {exc}") from None
    return obj() if isinstance(obj, type) else obj


async def _serve(args: argparse.Namespace) -> int:
    from meshkit.observe import tracing
    from meshkit.policy import Policy, PolicyError

    try:  # before the services are made: their clients look whether tracing is on
        provider = tracing.configure(args.service[0].rpartition(":")[2].lower(), args.trace)
    except (ValueError, ImportError) as exc:
        print(f"meshkit run: tracing: {exc}", file=sys.stderr)
        return EXIT_USAGE
    services = [_load_service(s) for s in args.service]
    live = bool(args.policy) and "://" in args.policy
    try:
        policy = _live_policy(args) if live else Policy.from_file(args.policy) if args.policy else None
    except (PolicyError, ConfigError) as exc:
        print(f"meshkit run: {exc}", file=sys.stderr)
        return EXIT_USAGE
    from meshkit.observe import default_chain

    token = args.admin_token or os.environ.get("MESHKIT_ADMIN_TOKEN") or None
    generated = token is None and not args.no_admin_service
    if generated:
        token = secrets.token_urlsafe(24)
    # Tracing exactly when --trace (or $OTEL_TRACES_EXPORTER) turned it on here.
    middleware = default_chain("server", metrics=not args.no_metrics, tracing=provider is not None)
    try:
        server = Server(
            services,
            host=args.host,
            port=args.port,
            registry=args.registry,
            policy=policy,
            admin=not args.no_admin_service,
            admin_token=token,
            middleware=middleware,
        )
    except (ValueError, ImportError) as exc:  # a bad registry URL, an engine's client not installed
        print(f"meshkit run: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        await server.start()
    except OSError as exc:
        return cannot_listen("run", "calls", args.host, args.port, exc)
    except ConfigUnavailable as exc:  # a live policy: no center and no cached revision
        print(f"meshkit run: {exc.message}", file=sys.stderr)
        return 69
    except ConfigError as exc:  # a live policy whose key is missing or has no valid revision
        print(f"meshkit run: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    say(args, f"meshkit: serving {', '.join(s.__meshkit_name__ for s in services)} on {server.address}")
    try:
        http = await start_admin(args, server)
    except OSError as exc:
        await server.stop(grace=0)
        return cannot_listen("run", "the admin HTTP port", args.host, args.admin_port, exc, "--admin-port")
    token_file = None
    if generated:
        assert token is not None
        token_file = write_admin_token(server.port, token)
        say(args, f"meshkit: admin token in {token_file} (meshkit switch reads it there; --admin-token to choose one)")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if args.policy and not live:
        loop.add_signal_handler(signal.SIGHUP, _reload_switches, server, args.policy)
    await stop.wait()
    say(args, f"meshkit: draining (grace {args.grace}s)")
    await server.stop(grace=args.grace)
    if token_file is not None:
        token_file.unlink(missing_ok=True)
    if http is not None:
        await http.stop()
    if provider is not None:
        provider.shutdown()  # type: ignore[attr-defined]  # flushes the spans still batched
    return 0


def _live_policy(args: argparse.Namespace) -> Any:
    from meshkit.config import Identity, LivePolicy
    from meshkit.config.release import parse_labels

    env = Identity.from_env(args.instance_id)
    labels = {**env.labels, **parse_labels(",".join(args.label))}
    return LivePolicy(args.policy, identity=Identity(env.instance, args.zone or env.zone, labels))


def _reload_switches(server: Server, path: str) -> None:
    """SIGHUP: make the switches what the policy file says now (the rest of the policy stays)."""
    from meshkit.policy import PolicyError
    from meshkit.policy.config import load

    try:
        wanted = {name for name, on in load(path).switches.items() if on}
    except PolicyError as exc:
        logging.getLogger("meshkit.policy").error("SIGHUP: policy file not reloaded: %s", exc)
        return
    for name in sorted(server.switches.on - wanted):
        server.switches.set(name, False)
    for name in sorted(wanted):
        server.switches.set(name, True)
