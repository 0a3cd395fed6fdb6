"""``meshkit registry``: the built-in registry server, its optional HTTP/JSON API and admin port."""

from __future__ import annotations

import argparse

from meshkit.cli.common import cannot_listen, seconds_or_zero, setup_logging, start_admin, until_stopped
from meshkit.registry.preservation import DEFAULT_HOLD_FOR
from meshkit.rpc.server import Server
from meshkit.transport.loop import run as run_loop


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``registry`` command's arguments."""
    p = sub.add_parser("registry", help="run the built-in registry server (clients use meshkit://HOST:PORT)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=7070, help="port to bind (default 7070)")
    p.add_argument("--http-port", type=int, default=None, help="also serve the HTTP/JSON API on this port")
    p.add_argument(
        "--self-preservation",
        type=seconds_or_zero,
        default=DEFAULT_HOLD_FOR,
        metavar="SECONDS",
        help=f"hold expired leases this long when many go silent at once (default {DEFAULT_HOLD_FOR:g}; 0: off)",
    )
    p.add_argument("--admin-port", type=int, default=None, help="serve /metrics, /healthz, /readyz on this HTTP port")
    p.add_argument(
        "--config-dir",
        default=None,
        help="keep the configuration store (meshkit://) in this directory's journal, so a restart keeps "
        "every revision (default: in memory, lost on restart)",
    )
    p.add_argument("--log-level", default="INFO", help="logging level (default INFO)")


def run(args: argparse.Namespace) -> int:
    setup_logging(args.log_level, access_log=False)
    return run_loop(_registry(args))


async def _registry(args: argparse.Namespace) -> int:
    from meshkit.registry.preservation import PreservationConfig, SelfPreservation
    from meshkit.registry.service import RegistryService
    from meshkit.registry.state import RegistryState

    preservation = SelfPreservation(PreservationConfig(hold_for=args.self_preservation))
    service = RegistryService(RegistryState(preservation=preservation))
    from meshkit.observe import default_chain

    middleware = default_chain("server", tracing=False, access_log=False)  # metrics only
    from meshkit.config.service import ConfigService
    from meshkit.coord.service import CoordService

    # Locks and elections for meshkit:// (meshkit.coord.builtin), in this process's memory; the
    # configuration store (meshkit.config.builtin) in --config-dir's journal, or in memory.
    config = ConfigService(args.config_dir)
    server = Server([service, CoordService(), config], host=args.host, port=args.port, middleware=middleware)
    try:
        await server.start()
    except OSError as exc:
        return cannot_listen("registry", "registrations", args.host, args.port, exc)
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
            return cannot_listen("registry", "its HTTP API", args.host, args.http_port, exc, "--http-port")
        print(f"meshkit: registry HTTP API on http://{args.host}:{http.port}/v1/", flush=True)
    print(f"meshkit: registry serving on {server.address} (clients: meshkit://{server.address})", flush=True)
    where = f"in {args.config_dir}" if args.config_dir else "in memory (--config-dir DIR keeps it across restarts)"
    print(f"meshkit: configuration store {where}", flush=True)
    admin = await start_admin(args, server)
    await until_stopped()
    if http is not None:
        await http.stop()
    if admin is not None:
        await admin.stop()
    await service.stop()
    await server.stop(grace=1.0)
    return 0
