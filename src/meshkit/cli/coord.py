"""``meshkit lock`` and ``meshkit elect``: run a command while holding a lock, or while leader.

Like ``flock`` and ``etcdctl lock``, with the lease kept by meshkit's watchdog and the fencing
token handed to the command in ``MESHKIT_FENCE`` (so it can pass the token to what it writes).
If the lease is lost while the command runs, the command is sent SIGTERM (then SIGKILL after
``--grace``) and meshkit exits with :data:`EXIT_LOCK_LOST`; otherwise with the command's status.
SIGINT and SIGTERM sent to meshkit are passed on to the command.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys

from meshkit.cli.common import EXIT_USAGE, seconds, seconds_or_zero
from meshkit.coord.locks import Held
from meshkit.errors import BadLockRequest, EngineUnavailable, LockLost, LockTimeout

#: Not granted within --wait (EX_TEMPFAIL: try again later).
EXIT_LOCK_TIMEOUT = 75
#: The lease was lost while the command ran; the command was stopped.
EXIT_LOCK_LOST = 76
#: The engine could not be reached or refused us (EX_UNAVAILABLE).
EXIT_ENGINE_UNAVAILABLE = 69


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    lock = sub.add_parser(
        "lock",
        usage="meshkit lock NAME --backend URL [--ttl S] [--wait S] [--grace S] -- CMD [ARGS...]",
        help="run a command while holding a distributed lock (the fencing token in MESHKIT_FENCE)",
        description="Run CMD while holding lock NAME. Exit: CMD's status; "
        f"{EXIT_LOCK_TIMEOUT} not granted within --wait; {EXIT_LOCK_LOST} the lock was lost (CMD was stopped); "
        f"{EXIT_ENGINE_UNAVAILABLE} the engine is unreachable.",
    )
    lock.add_argument("name", help="the lock's name")
    _common(lock)
    elect = sub.add_parser(
        "elect",
        usage="meshkit elect NAME VALUE --backend URL [--ttl S] [--wait S] [--grace S] -- CMD [ARGS...]",
        help="run a command while this process is the elected leader (the term token in MESHKIT_FENCE)",
        description="Campaign in election NAME as VALUE and run CMD once elected, for as long as the term "
        "lasts. Exit codes as for `meshkit lock`.",
    )
    elect.add_argument("name", help="the election's name")
    elect.add_argument("value", help="what this candidate is called while it leads (leader() returns it)")
    _common(elect)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backend", required=True, help="engine URL: memory://, redis://, mysql://, postgresql://, etcd://, zk://"
    )
    parser.add_argument("--ttl", type=seconds, default=10.0, help="the lease, renewed every ttl/3 (default 10)")
    parser.add_argument(
        "--wait",
        type=seconds_or_zero,
        default=None,
        help="give up after this many seconds (0: try once; default: for ever)",
    )
    parser.add_argument(
        "--grace", type=seconds_or_zero, default=5.0, help="after SIGTERM, seconds before SIGKILL if the lock is lost"
    )


def split_command(argv: list[str]) -> tuple[list[str], list[str]]:
    """``lock NAME --backend URL -- CMD ARGS`` -> (meshkit's arguments, the command): split at the
    first ``--``, so that the command's own flags are never read as meshkit's."""
    if "--" not in argv:
        return argv, []
    cut = argv.index("--")
    return argv[:cut], argv[cut + 1 :]


def run(args: argparse.Namespace, cmd: list[str]) -> int:
    if not cmd:
        print(f"meshkit {args.command}: give the command to run after --", file=sys.stderr)
        return EXIT_USAGE
    try:
        return asyncio.run(_run(args, cmd))
    except BadLockRequest as exc:
        print(f"meshkit {args.command}: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    except ValueError as exc:  # an unknown scheme, a bad URL
        print(f"meshkit {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except LockTimeout as exc:
        print(f"meshkit {args.command}: {exc.message}", file=sys.stderr)
        return EXIT_LOCK_TIMEOUT
    except EngineUnavailable as exc:
        print(f"meshkit {args.command}: {exc.message}", file=sys.stderr)
        return EXIT_ENGINE_UNAVAILABLE


async def _run(args: argparse.Namespace, cmd: list[str]) -> int:
    from meshkit.coord import Election, Locks

    env = dict(os.environ)
    if args.command == "lock":
        async with Locks(args.backend) as locks:
            held = await locks.acquire(args.name, args.ttl, args.wait)
            env.update(MESHKIT_LOCK=args.name, MESHKIT_FENCE=str(held.token))
            return await _supervise(held, cmd, env, args)
    async with Election(args.backend, args.name, ttl=args.ttl) as election:
        term = await election.elect(args.value.encode(), args.wait)
        env.update(MESHKIT_ELECTION=args.name, MESHKIT_LEADER=args.value, MESHKIT_FENCE=str(term.token))
        return await _supervise(term, cmd, env, args)


async def _supervise(held: Held, cmd: list[str], env: dict[str, str], args: argparse.Namespace) -> int:
    try:
        child = await asyncio.create_subprocess_exec(*cmd, env=env)
    except OSError as exc:
        await held.release()
        print(f"meshkit {args.command}: cannot run {cmd[0]!r}: {exc.strerror or exc}", file=sys.stderr)
        return 127
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, child.send_signal, sig)
    exited = asyncio.ensure_future(child.wait())
    lost = asyncio.ensure_future(held.lost.wait())
    await asyncio.wait([exited, lost], return_when=asyncio.FIRST_COMPLETED)
    if not exited.done():
        print(f"meshkit {args.command}: lost {held.name!r} while the command ran; stopping it", file=sys.stderr)
        child.terminate()
        try:
            await asyncio.wait_for(asyncio.shield(exited), args.grace)
        except TimeoutError:
            child.kill()
            await exited
    lost.cancel()
    try:
        await held.release()
    except LockLost:
        return EXIT_LOCK_LOST
    return exited.result()
