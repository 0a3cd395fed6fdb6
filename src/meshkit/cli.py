"""The ``meshkit`` command: run a service, call one, benchmark, and the demo."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import secrets
import signal
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from meshkit import __version__
from meshkit.errors import RpcError, StatusCode
from meshkit.registry.preservation import DEFAULT_HOLD_FOR
from meshkit.rpc.client import Client, parse_target
from meshkit.rpc.server import Server
from meshkit.rpc.service import Service
from meshkit.transport.loop import run as run_loop

EXIT_USAGE = 2
EXIT_RPC_ERROR = 1
REGISTRY_SCHEMES = "memory://, meshkit://HOST:PORT, etcd://HOST:PORT, zk://HOST:PORT"


def _number_of_seconds(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None


def _seconds(text: str) -> float:
    """An argparse type: a number of seconds above zero."""
    value = _number_of_seconds(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, got {text}")
    return value


def _seconds_or_zero(text: str) -> float:
    """An argparse type: a number of seconds, 0 or more (0 turns the feature off)."""
    value = _number_of_seconds(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 (off) or more seconds, got {text}")
    return value


def _cannot_listen(command: str, what: str, host: str, port: int, exc: OSError, flag: str = "--port") -> int:
    """One line for a port that cannot be bound (taken, or not ours to bind), not a traceback."""
    reason = exc.strerror or str(exc)
    print(
        f"meshkit {command}: cannot listen for {what} on {host}:{port}: {reason}; choose another {flag} "
        "(0 picks a free one)",
        file=sys.stderr,
    )
    return EXIT_USAGE


def admin_token_path(port: int) -> Path:
    """Where ``meshkit run`` leaves the admin token it generated for the process on ``port``:
    readable by this user only, and where ``meshkit switch`` looks for a local target's token."""
    base = Path(os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()) / f"meshkit-{os.getuid()}"
    return base / f"admin-{port}.token"


def _write_admin_token(port: int, token: str) -> Path:
    path = admin_token_path(port)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return path


def _say(args: argparse.Namespace, text: str) -> None:
    """A line for the operator on stdout: as a JSON object under ``--log-format json``, so that
    the output is one format."""
    if getattr(args, "log_format", "text") == "json":
        print(json.dumps({"level": "INFO", "logger": "meshkit.cli", "message": text}), flush=True)
    else:
        print(text, flush=True)


def _load_service(spec: str) -> Service:
    """``package.module:Class`` -> an instance of that Service class (a bad name is one line)."""
    from meshkit.rpc.loading import ServiceImportError, import_service

    try:
        obj = import_service(spec)
    except ServiceImportError as exc:
        raise SystemExit(f"meshkit: {exc}") from None
    return obj() if isinstance(obj, type) else obj


def _setup_logging(level: str, access_log: bool, fmt: str = "text") -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    if fmt == "json":
        from meshkit.observe.logs import install

        for handler in logging.getLogger().handlers:
            install(handler)
    if not access_log:
        logging.getLogger("meshkit.access").setLevel(logging.WARNING)
    # httpx logs every request at INFO, the etcd registry's keepalives included.
    for chatty in ("httpx", "httpcore"):
        logging.getLogger(chatty).setLevel(logging.WARNING)


async def _serve(args: argparse.Namespace) -> int:
    from meshkit.observe import tracing
    from meshkit.policy import Policy, PolicyError

    try:  # before the services are made: their clients look whether tracing is on
        provider = tracing.configure(args.service[0].rpartition(":")[2].lower(), args.trace)
    except (ValueError, ImportError) as exc:
        print(f"meshkit run: tracing: {exc}", file=sys.stderr)
        return EXIT_USAGE
    services = [_load_service(s) for s in args.service]
    try:
        policy = Policy.from_file(args.policy) if args.policy else None
    except PolicyError as exc:
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
        return _cannot_listen("run", "calls", args.host, args.port, exc)
    _say(args, f"meshkit: serving {', '.join(s.__meshkit_name__ for s in services)} on {server.address}")
    try:
        http = await _start_admin(args, server)
    except OSError as exc:
        await server.stop(grace=0)
        return _cannot_listen("run", "the admin HTTP port", args.host, args.admin_port, exc, "--admin-port")
    token_file = None
    if generated:
        assert token is not None
        token_file = _write_admin_token(server.port, token)
        _say(args, f"meshkit: admin token in {token_file} (meshkit switch reads it there; --admin-token to choose one)")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if args.policy:
        loop.add_signal_handler(signal.SIGHUP, _reload_switches, server, args.policy)
    await stop.wait()
    _say(args, f"meshkit: draining (grace {args.grace}s)")
    await server.stop(grace=args.grace)
    if token_file is not None:
        token_file.unlink(missing_ok=True)
    if http is not None:
        await http.stop()
    if provider is not None:
        provider.shutdown()  # type: ignore[attr-defined]  # flushes the spans still batched
    return 0


async def _until_stopped() -> None:
    """Return on SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def _start_admin(args: argparse.Namespace, server: Server) -> Any:
    """The admin HTTP port (/metrics, /healthz, /readyz) when ``--admin-port`` is given, else None."""
    if args.admin_port is None:
        return None
    from meshkit.observe import AdminHttp
    from meshkit.observe.admin import servers_ready

    http = AdminHttp(ready=servers_ready([server]))
    await http.start(args.host, args.admin_port)
    _say(args, f"meshkit: admin on http://{args.host}:{http.port} (/metrics /healthz /readyz)")
    return http


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


def _local_token(target: str) -> str | None:
    """The token ``meshkit run`` generated for a process on this machine, if it left one."""
    host, _, port = target.rpartition(":")
    if host not in ("127.0.0.1", "localhost", "::1", "[::1]") or not port.isdigit():
        return None
    try:
        return admin_token_path(int(port)).read_text().strip() or None
    except OSError:
        return None


async def _switch(args: argparse.Namespace) -> int:
    if (args.name is None) != (args.state is None):
        print("meshkit switch: give SERVICE.METHOD and on|off, or neither to show the state", file=sys.stderr)
        return EXIT_USAGE
    try:
        targets = [f"{h}:{p}" for h, p in parse_target(args.target)]
    except ValueError as exc:
        print(f"meshkit switch: {exc}", file=sys.stderr)
        return EXIT_USAGE
    status = 0
    for target in targets:
        token = args.token or os.environ.get("MESHKIT_ADMIN_TOKEN") or _local_token(target)
        metadata = {"authorization": f"Bearer {token}"} if token else None
        client = Client(target=target, timeout=args.timeout, middleware=[], metadata=metadata)
        try:
            if args.name is None:
                answer = await client.call("meshkit-admin", "status")
            else:
                answer = await client.call("meshkit-admin", "switch", {"name": args.name, "on": args.state == "on"})
                if not answer.get("served_here"):
                    answer["note"] = f"{target} does not serve {args.name}; its clients still honour the switch"
                elif not answer.get("has_fallback") and args.state == "on":
                    answer["note"] = f"{args.name} has no fallback: it is refused with UNAVAILABLE while on"
            print(json.dumps({target: answer}, indent=2, default=str))
        except RpcError as exc:
            print(f"{target}: error: {exc.code.name}: {exc.message}", file=sys.stderr)
            status = EXIT_RPC_ERROR
        finally:
            await client.close()
    return status


async def _call(args: argparse.Namespace) -> int:
    service, sep, method = args.method.rpartition(".")
    if not sep or not service or not method:
        print(f"meshkit call: expected SERVICE.METHOD, got {args.method!r}", file=sys.stderr)
        return EXIT_USAGE
    try:
        payload = json.loads(args.args) if args.args else {}
    except json.JSONDecodeError as exc:
        print(f"meshkit call: arguments are not valid JSON: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not isinstance(payload, dict):
        print("meshkit call: arguments must be a JSON object of parameter names to values", file=sys.stderr)
        return EXIT_USAGE
    metadata: dict[str, Any] = {}
    for item in args.metadata or []:
        key, eq, value = item.partition("=")
        if not eq:
            print(f"meshkit call: --metadata wants KEY=VALUE, got {item!r}", file=sys.stderr)
            return EXIT_USAGE
        metadata[key] = value
    try:
        client = Client(target=args.target, timeout=args.timeout, middleware=[])
        client._check_metadata(metadata)
    except (ValueError, TypeError) as exc:
        print(f"meshkit call: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        if args.stream:
            async for item in client.stream(service, method, payload, metadata=metadata):
                print(json.dumps(item, default=str), flush=True)
        else:
            result = await client.call(service, method, payload, metadata=metadata)
            print(json.dumps(result, indent=2, default=str))
    except RpcError as exc:
        hint = ""
        if exc.code is StatusCode.FAILED_PRECONDITION and "server-streaming method" in exc.message:
            hint = " (add --stream to call a stream)"
        elif exc.code is StatusCode.FAILED_PRECONDITION and "unary method" in exc.message:
            hint = " (it is not a stream: leave out --stream)"
        print(f"error: {exc.code.name}: {exc.message}{hint}", file=sys.stderr)
        return EXIT_RPC_ERROR
    finally:
        await client.close()
    return 0


async def _registry(args: argparse.Namespace) -> int:
    from meshkit.registry.preservation import PreservationConfig, SelfPreservation
    from meshkit.registry.service import RegistryService
    from meshkit.registry.state import RegistryState

    preservation = SelfPreservation(PreservationConfig(hold_for=args.self_preservation))
    service = RegistryService(RegistryState(preservation=preservation))
    from meshkit.observe import default_chain

    middleware = default_chain("server", tracing=False, access_log=False)  # metrics only
    server = Server([service], host=args.host, port=args.port, middleware=middleware)
    try:
        await server.start()
    except OSError as exc:
        return _cannot_listen("registry", "registrations", args.host, args.port, exc)
    service.start()
    http = None
    if args.http_port is not None:
        from meshkit.registry.http import RegistryHttp

        http = RegistryHttp(service)
        try:
            await http.start(args.host, args.http_port)
        except OSError as exc:
            await service.stop()
            await server.stop(grace=0)
            return _cannot_listen("registry", "its HTTP API", args.host, args.http_port, exc, "--http-port")
        print(f"meshkit: registry HTTP API on http://{args.host}:{http.port}/v1/", flush=True)
    print(f"meshkit: registry serving on {server.address} (clients: meshkit://{server.address})", flush=True)
    admin = await _start_admin(args, server)
    await _until_stopped()
    if http is not None:
        await http.stop()
    if admin is not None:
        await admin.stop()
    await service.stop()
    await server.stop(grace=1.0)
    return 0


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
    await _until_stopped()
    await server.stop()
    if admin is not None:
        await admin.stop()
    if provider is not None:
        provider.shutdown()  # type: ignore[attr-defined]  # flushes the spans still batched
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="meshkit", description="meshkit: asyncio microservices with governance built in"
    )
    parser.add_argument("--version", action="version", version=f"meshkit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="serve one or more Service classes")
    p.add_argument("service", nargs="+", help="MODULE:Class of a meshkit Service (several allowed)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=7001, help="port to bind (0 picks a free one; default 7001)")
    p.add_argument("--grace", type=float, default=5.0, help="seconds in-flight calls get on SIGTERM (default 5)")
    p.add_argument("--registry", default=None, help=f"register in this registry ({REGISTRY_SCHEMES})")
    p.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    p.add_argument("--no-access-log", action="store_true", help="do not log a line per call")
    p.add_argument("--policy", default=None, help="resilience policy TOML file (SIGHUP re-reads its [switches])")
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

    p = sub.add_parser("switch", help="turn a method of running processes into its fallback (or back), live")
    p.add_argument("name", nargs="?", help="SERVICE.METHOD (omit, with the state, to show switches and breakers)")
    p.add_argument("state", nargs="?", choices=["on", "off"], help="on: answer with the fallback; off: normal")
    p.add_argument("--target", required=True, help="HOST:PORT of the process(es), comma-separated")
    p.add_argument("--timeout", type=_seconds, default=5.0, help="seconds (default 5)")
    p.add_argument(
        "--token",
        default=None,
        help="the admin token (default $MESHKIT_ADMIN_TOKEN, else the file meshkit run left for a local process)",
    )

    p = sub.add_parser("call", help="call a method with JSON arguments and print the JSON result")
    p.add_argument("target", help="HOST:PORT of a server (comma-separated for several)")
    p.add_argument("method", help="SERVICE.METHOD")
    p.add_argument("args", nargs="?", default="{}", help="JSON object of arguments (default {})")
    p.add_argument("--timeout", type=_seconds, default=10.0, help="seconds (default 10)")
    p.add_argument("--stream", action="store_true", help="the method is server-streaming: print each message")
    p.add_argument("--metadata", "-m", action="append", help="KEY=VALUE request metadata (repeatable)")

    p = sub.add_parser("registry", help="run the built-in registry server (clients use meshkit://HOST:PORT)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=7070, help="port to bind (default 7070)")
    p.add_argument("--http-port", type=int, default=None, help="also serve the HTTP/JSON API on this port")
    p.add_argument(
        "--self-preservation",
        type=_seconds_or_zero,
        default=DEFAULT_HOLD_FOR,
        metavar="SECONDS",
        help=f"hold expired leases this long when many go silent at once (default {DEFAULT_HOLD_FOR:g}; 0: off)",
    )
    p.add_argument("--admin-port", type=int, default=None, help="serve /metrics, /healthz, /readyz on this HTTP port")
    p.add_argument("--log-level", default="INFO", help="logging level (default INFO)")

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

    sub.add_parser("bench", help="benchmark meshkit against gRPC and a raw asyncio echo", add_help=False)
    p = sub.add_parser("demo", help="run the demo system with a live view")
    p.add_argument("--duration", type=float, default=None, help="run N seconds then exit (non-interactive)")
    p.add_argument("--concurrency", type=int, default=8, help="concurrent callers driving the demo (default 8)")
    p.add_argument("--rate", type=float, default=200.0, help="target calls/s (0 = as fast as possible; default 200)")
    p.add_argument("--kill-after", type=float, default=None, help="SIGKILL one inventory after N seconds")
    p.add_argument("--fault", choices=["slow", "failing"], default=None, help="make inventory-2 slow or failing")
    p.add_argument("--fault-after", type=float, default=5.0, help="seconds before the fault starts (default 5)")
    p.add_argument("--fault-for", type=float, default=10.0, help="seconds the fault lasts (default 10)")
    p.add_argument("--otlp", default=None, help="export every process's traces to this OTLP/HTTP endpoint")
    p.add_argument(
        "--gateway-port",
        type=int,
        default=None,
        help="the HTTP entry point's port, an error if taken (0: any free one); default 8080, or a free one if taken",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "bench":
        from meshkit.benchmark.harness import main as bench_main

        return bench_main(argv[1:])
    args = build_parser().parse_args(argv)
    if args.command == "run":
        _setup_logging(args.log_level, not args.no_access_log, args.log_format)
        return run_loop(_serve(args))
    if args.command == "call":
        return run_loop(_call(args))
    if args.command == "switch":
        return run_loop(_switch(args))
    if args.command == "registry":
        _setup_logging(args.log_level, access_log=False)
        return run_loop(_registry(args))
    if args.command == "gateway":
        _setup_logging(args.log_level, access_log=False, fmt=args.log_format)
        if args.no_access_log:
            logging.getLogger("meshkit.gateway.access").setLevel(logging.WARNING)
        return run_loop(_gateway(args))
    if args.command == "demo":
        from meshkit.demo.runner import run_demo

        return run_demo(
            gateway_port=args.gateway_port,
            duration=args.duration,
            concurrency=args.concurrency,
            rate=args.rate,
            kill_after=args.kill_after,
            fault=args.fault,
            fault_after=args.fault_after,
            fault_for=args.fault_for,
            otlp=args.otlp,
        )
    return EXIT_USAGE


if __name__ == "__main__":
    raise SystemExit(main())
