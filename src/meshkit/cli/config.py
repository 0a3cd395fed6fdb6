"""``meshkit config``: read, write, watch and roll back a configuration store from the shell.

    meshkit config put policy/order policy.toml --store file:///var/lib/myapp/config --expect 0
    meshkit config get policy/order --store URL
    meshkit config watch policy/ --store URL --since 12
    meshkit config history policy/order --store URL
    meshkit config diff policy/order 12 15 --store URL
    meshkit config rollback policy/order --to 12 --store URL
    meshkit config status policy/order --store URL      # which instance runs which revision
    meshkit config promote policy/order --store URL     # the gray revision, to everyone

Values go to stdout as they are (bytes); everything else is one line per item. Exit status: 0;
:data:`EXIT_NOT_FOUND` for a key that does not exist (or no value at the revision ``diff`` asks
for); :data:`EXIT_CONFLICT` when ``--expect`` did not hold (the message names the revision found);
:data:`EXIT_COMPACTED` for a ``watch --since`` the store no longer has; :data:`EXIT_FAILED` when the
store did not complete the call; 69 the store is unreachable; 2 bad input (``rollback --to`` a
revision before the key existed, too).
"""

from __future__ import annotations

import argparse
import asyncio
import difflib
import sys
import time

import msgspec

from meshkit.cli.common import EXIT_USAGE
from meshkit.config import BadConfigRequest, Change, Compacted, ConfigError, ConfigStore, ConfigUnavailable, Conflict
from meshkit.config.keys import MAX_VALUE
from meshkit.config.live import NothingToPromote
from meshkit.policy.config import PolicyConfig

#: The key (or the revision asked for) does not exist.
EXIT_NOT_FOUND = 1
#: ``--expect`` did not hold: somebody else wrote the key first.
EXIT_CONFLICT = 3
#: The store could not be reached (EX_UNAVAILABLE).
EXIT_UNAVAILABLE = 69
#: ``watch --since`` asked for revisions the store no longer has (list again).
EXIT_COMPACTED = 4
#: The store did not complete the call (a timeout, an error of its own): a write may have been made.
EXIT_FAILED = 5


def policy_problem(value: bytes, where: str) -> tuple[str | None, PolicyConfig | None]:
    """Why ``value`` cannot run as a policy (the loader's message, naming ``where``), or None."""
    from meshkit.policy import PolicyError
    from meshkit.policy.config import check_runnable, parse

    try:
        config = parse(value, where)
    except PolicyError as exc:
        return str(exc), None
    try:
        check_runnable(config)
    except PolicyError as exc:
        return f"{where}: {exc}", config
    return None, config


def _revision(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a revision is a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"a revision is 0 or more, got {text}")
    return value


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    config = sub.add_parser(
        "config",
        help="read, write, watch and roll back a configuration store (file:///dir, meshkit://, etcd://, zk://)",
        description="Work with the versioned configuration store --store names. Exit: 0; "
        f"{EXIT_NOT_FOUND} no such key or revision; {EXIT_CONFLICT} --expect did not hold; "
        f"{EXIT_COMPACTED} watch --since revisions the store no longer has; {EXIT_FAILED} the store did not "
        f"complete the call; {EXIT_UNAVAILABLE} the store is unreachable; {EXIT_USAGE} bad input.",
    )
    actions = config.add_subparsers(dest="action", required=True)

    def action(name: str, help_text: str) -> argparse.ArgumentParser:
        parser = actions.add_parser(name, help=help_text)
        parser.add_argument(
            "--store",
            required=True,
            help="the store's URL: file:///dir, meshkit://HOST:PORT, etcd://HOST:PORT[/prefix], zk://HOST:PORT[/root]",
        )
        return parser

    action("get", "print a key's value (its revision on stderr)").add_argument("key")
    put = action("put", "write a key from a file or stdin; prints the new revision")
    put.add_argument("key")
    put.add_argument("file", nargs="?", default="-", help="the value's file (default: stdin)")
    put.add_argument("--expect", type=_revision, help="only if the key is at this revision (0: does not exist)")
    delete = action("delete", "delete a key; prints the revision of the deletion")
    delete.add_argument("key")
    delete.add_argument("--expect", type=_revision, help="only if the key is at this revision")
    action("list", "print 'REVISION KEY' for every key under a prefix").add_argument("prefix", nargs="?", default="")
    watch = action("watch", "print 'REVISION put|delete KEY' for every change under a prefix")
    watch.add_argument("prefix", nargs="?", default="")
    watch.add_argument("--since", type=_revision, help="the changes after this revision (default: from now)")
    watch.add_argument("--count", type=int, help="stop after this many changes")
    action("history", "print every change of a key, oldest first").add_argument("key")
    diff = action("diff", "show how a key's value changed between two revisions")
    diff.add_argument("key")
    diff.add_argument("old", type=_revision, help="the earlier revision")
    diff.add_argument("new", type=_revision, nargs="?", help="the later revision (default: the current value)")
    rollback = action("rollback", "write a key's value at --to again, as a new revision")
    rollback.add_argument("key")
    rollback.add_argument("--to", type=_revision, required=True, help="the revision to go back to")
    rollback.add_argument(
        "--policy", action="store_true", help="check the old value as a policy first; write nothing if invalid"
    )
    put.add_argument(
        "--policy", action="store_true", help="check the value as a policy file first; write nothing if invalid"
    )
    action("status", "list the instances running a live policy key, with the revision each applied").add_argument("key")
    action("promote", "make a key's gray revision (KEY/gray) everyone's, then delete it").add_argument("key")


#: What each error of a store means to the shell (the first that matches: subclasses first).
EXITS: tuple[tuple[type[ConfigError], int], ...] = (
    (BadConfigRequest, EXIT_USAGE),
    (Conflict, EXIT_CONFLICT),
    (ConfigUnavailable, EXIT_UNAVAILABLE),
    (Compacted, EXIT_COMPACTED),
    (ConfigError, EXIT_FAILED),  # the outcome is unknown (a timeout, the registry failed)
)


def run(args: argparse.Namespace) -> int:
    if args.action == "put":
        # Read before the event loop starts; one byte over the limit is enough to be refused.
        try:
            if args.file == "-":
                args.value = sys.stdin.buffer.read(MAX_VALUE + 1)
            else:
                with open(args.file, "rb") as source:
                    args.value = source.read(MAX_VALUE + 1)
        except OSError as exc:
            print(f"meshkit config put: cannot read {args.file}: {exc.strerror or exc}", file=sys.stderr)
            return EXIT_USAGE
        if args.policy and len(args.value) <= MAX_VALUE:
            from meshkit.config.release import GRAY

            where = args.file if args.file != "-" else "<stdin>"
            problem, config = policy_problem(args.value, where)
            if problem is not None:
                print(f"meshkit config put: not written: {problem}", file=sys.stderr)
                return EXIT_USAGE
            if args.key.endswith(f"/{GRAY}") and config is not None and config.release is None:
                print(
                    f"meshkit config put: note: {where} has no [release] table, so this gray revision picks "
                    "no instance (see docs/configuration.md, Gray release)",
                    file=sys.stderr,
                )
    try:
        return asyncio.run(_run(args))
    except ConfigError as exc:
        print(f"meshkit config {args.action}: {exc.message}", file=sys.stderr)
        return next(code for kind, code in EXITS if isinstance(exc, kind))
    except KeyboardInterrupt:
        return 130


async def _run(args: argparse.Namespace) -> int:
    actions = {
        "get": _get,
        "put": _put,
        "delete": _delete,
        "list": _list,
        "watch": _watch,
        "history": _history,
        "diff": _diff,
        "rollback": _rollback,
        "status": _status,
        "promote": _promote,
    }
    async with ConfigStore(args.store) as store:
        try:
            return await actions[args.action](store, args)
        except NothingToPromote as exc:
            return _missing(args, exc.message)


def _missing(args: argparse.Namespace, what: str) -> int:
    print(f"meshkit config {args.action}: {what}", file=sys.stderr)
    return EXIT_NOT_FOUND


async def _get(store: ConfigStore, args: argparse.Namespace) -> int:
    entry = await store.get(args.key)
    if entry is None:
        return _missing(args, f"no key {args.key!r} in {args.store}")
    sys.stdout.buffer.write(entry.value)
    sys.stdout.flush()
    print(f"revision {entry.revision}", file=sys.stderr)
    return 0


async def _put(store: ConfigStore, args: argparse.Namespace) -> int:
    print(await store.put(args.key, args.value, expect=args.expect))
    return 0


async def _delete(store: ConfigStore, args: argparse.Namespace) -> int:
    revision = await store.delete(args.key, expect=args.expect)
    if revision is None:
        return _missing(args, f"no key {args.key!r} in {args.store}")
    print(revision)
    return 0


async def _list(store: ConfigStore, args: argparse.Namespace) -> int:
    listing = await store.list(args.prefix)
    for entry in listing:
        print(f"{entry.revision} {entry.key}")
    print(f"as of revision {listing.revision}", file=sys.stderr)
    return 0


def _line(change: Change) -> str:
    if change.value is None:
        return f"{change.revision} delete {change.key}"
    return f"{change.revision} put {change.key} ({len(change.value)} bytes)"


async def _watch(store: ConfigStore, args: argparse.Namespace) -> int:
    seen = 0
    if args.count is not None and args.count <= 0:
        return 0
    async for change in store.watch(args.prefix, since=args.since):
        print(_line(change), flush=True)
        seen += 1
        if args.count is not None and seen >= args.count:
            break
    return 0


async def _history(store: ConfigStore, args: argparse.Namespace) -> int:
    changes = await store.history(args.key)
    if not changes:
        return _missing(args, f"no key {args.key!r} in {args.store}")
    for change in changes:
        print(_line(change))
    return 0


async def _diff(store: ConfigStore, args: argparse.Namespace) -> int:
    changes = await store.history(args.key)

    def at(revision: int | None) -> tuple[str, bytes | None] | None:
        if revision is None:
            return ("current", changes[-1].value) if changes else None
        past = [c for c in changes if c.revision <= revision]
        return (f"revision {revision}", past[-1].value) if past else None

    old, new = at(args.old), at(args.new)
    if old is None or new is None:
        return _missing(args, f"key {args.key!r} has no value at revision {args.old if old is None else args.new}")
    lines = difflib.unified_diff(
        (old[1] or b"").decode(errors="replace").splitlines(keepends=True),
        (new[1] or b"").decode(errors="replace").splitlines(keepends=True),
        f"{args.key} ({old[0]}{', deleted' if old[1] is None else ''})",
        f"{args.key} ({new[0]}{', deleted' if new[1] is None else ''})",
    )
    sys.stdout.writelines(lines)
    return 0


async def _rollback(store: ConfigStore, args: argparse.Namespace) -> int:
    if args.policy:
        past = [c for c in await store.history(args.key) if c.revision <= args.to]
        if past and past[-1].value is not None:
            problem, _ = policy_problem(past[-1].value, f"{args.key}@{past[-1].revision}")
            if problem is not None:
                print(f"meshkit config rollback: not written: {problem}", file=sys.stderr)
                return EXIT_USAGE
    revision = await store.rollback(args.key, to=args.to)
    print(revision if revision is not None else f"{args.key} is absent already, as it was at revision {args.to}")
    return 0


async def _status(store: ConfigStore, args: argparse.Namespace) -> int:
    from meshkit.config.release import gray_key, status_prefix

    main, gray = await store.get(args.key), await store.get(gray_key(args.key))
    print(f"{args.key}: revision {main.revision if main else '(absent)'}", end="")
    print(f"; gray revision {gray.revision} at {gray.key}" if gray else "")
    listing = await store.list(status_prefix(args.key))
    if not listing.entries:
        return _missing(args, f"no instance has reported running {args.key!r} (they report once they reach the store)")
    now = time.time()
    print(f"{'INSTANCE':<28} {'REVISION':>8} {'STATE':<22} {'ZONE':<10} REPORTED")
    for entry in listing:
        try:
            report = msgspec.json.decode(entry.value)
        except msgspec.DecodeError:
            print(f"{entry.key.rpartition('/')[2]:<28} {'?':>8} unreadable report")
            continue
        state = _state(report, main.revision if main else None, gray.revision if gray else None)
        age = now - float(report.get("reported_at") or now)
        print(
            f"{report.get('instance', '?'):<28} {report.get('revision') or '-':>8} {state:<22} "
            f"{report.get('zone') or '-':<10} {age:.0f}s ago"
        )
        rejected = report.get("rejected")
        if rejected:
            print(f"  rejected revision {rejected['revision']}: {rejected['error']}")
    return 0


def _state(report: dict[str, object], main: int | None, gray: int | None) -> str:
    revision = report.get("revision")
    words = []
    if report.get("gray"):
        words.append("gray")
    if report.get("cached"):
        words.append("cached")
    if revision is not None and revision not in (main, gray):
        words.append("behind")
    if report.get("rejected"):
        words.append("rejected-one")
    return ",".join(words) or "current"


async def _promote(store: ConfigStore, args: argparse.Namespace) -> int:
    from meshkit.config.live import promote

    revision, kept = await promote(store, args.key)
    print(revision)
    if kept is not None:
        print(f"a newer gray revision ({kept}) was written meanwhile and was kept at {args.key}/gray", file=sys.stderr)
    return 0
