"""``meshkit gateway``: the HTTP API gateway from its TOML config, with tracing and an admin port."""

from __future__ import annotations

import argparse
import logging
import sys

from meshkit.cli.common import EXIT_USAGE, setup_logging, until_stopped
from meshkit.transport.loop import run as run_loop


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``gateway`` command's arguments."""
    p = sub.add_parser("gateway", help="run the HTTP API gateway in front of meshkit services")
    p.add_argument("--config", required=True, help="the gateway's TOML config (docs/gateway.md)")
    p.add_argument("--host", default=None, help="address to bind (default: the config's, else 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port to bind (default: the config's, else 8080)")
    p.add_argument("--admin-port", type=int, default=None, help="serve /metrics, /healthz, /readyz on this HTTP port")
    p.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    p.add_argument(
        "--trace",
        choices=["otlp", "zipkin", "console", "none"],
        default=None,
        help="export traces of requests and the calls they make (default: $OTEL_TRACES_EXPORTER, else none)",
    )
    p.add_argument("--no-access-log", action="store_true", help="no line per request (meshkit.gateway.access)")
    p.add_argument("--log-format", choices=["text", "json"], default="text", help="log lines as text or JSON")


def run(args: argparse.Namespace) -> int:
    setup_logging(args.log_level, access_log=False, fmt=args.log_format)
    if args.no_access_log:
        logging.getLogger("meshkit.gateway.access").setLevel(logging.WARNING)
    return run_loop(_gateway(args))


async def _gateway(args: argparse.Namespace) -> int:
    from meshkit.gateway import GatewayBindError, GatewayConfigError, GatewayServer, app_from_file
    from meshkit.gateway.metrics import GatewayMetrics
    from meshkit.observe import default_chain, tracing

    provider = tracing.configure("gateway", args.trace) if args.trace != "none" else None
    # No client access log: the gateway writes its own, with the route and request id.
    middleware = default_chain("client", tracing=provider is not None, tracer_provider=provider, access_log=False)
    try:
        app = app_from_file(
            args.config,
            metrics=GatewayMetrics(),
            client_middleware=middleware,
            tracer_provider=provider,
            trace_ratio=tracing.sampling_ratio(),
        )
    except (GatewayConfigError, ValueError) as exc:
        print(f"meshkit gateway: {exc}", file=sys.stderr)
        return EXIT_USAGE
    server = GatewayServer(app, host=args.host, port=args.port)
    try:
        await server.start()
    except GatewayBindError as exc:
        print(f"meshkit gateway: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"meshkit: gateway on http://{server.address} ({len(app.config.routes)} routes)", flush=True)
    admin = None
    if args.admin_port is not None:
        from meshkit.observe import AdminHttp

        admin = AdminHttp()
        await admin.start(server.host, args.admin_port)
        print(f"meshkit: admin on http://{server.host}:{admin.port} (/metrics /healthz /readyz)", flush=True)
    await until_stopped()
    await server.stop()
    if admin is not None:
        await admin.stop()
    if provider is not None:
        provider.shutdown()  # type: ignore[attr-defined]  # flushes the spans still batched
    return 0
