"""The machine a benchmark runs on: where to pin the server and the client (distinct cores, not
SMT siblings), and the facts every result is reported with (cpu, cores, versions, pinning).

Read from the OS (affinity, sysfs, /proc/cpuinfo) and the installed distributions; nothing here
starts a process.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Placement:
    server_cpu: int | None
    client_cpu: int | None
    note: str

    @property
    def pinned(self) -> bool:
        return self.server_cpu is not None


def _siblings(cpu: int) -> set[int]:
    """Hardware threads sharing ``cpu``'s core (itself included), from sysfs when it is there."""
    path = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list")
    try:
        text = path.read_text().strip()
    except OSError:
        return {cpu}
    out: set[int] = set()
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        if lo.isdigit():
            out.update(range(int(lo), int(hi or lo) + 1))
    return out or {cpu}


def choose_cpus(pin: bool = True) -> Placement:
    """Server on the first usable cpu, client on the next one that is not its SMT sibling."""
    if not pin:
        return Placement(None, None, "no (--no-pin)")
    try:
        allowed = sorted(os.sched_getaffinity(0))
    except AttributeError:
        return Placement(None, None, "no (this platform has no os.sched_setaffinity)")
    if len(allowed) < 2:
        return Placement(None, None, "no (1 usable core: server and client share it)")
    server = allowed[0]
    siblings = _siblings(server)
    client = next((c for c in allowed[1:] if c not in siblings), allowed[1])
    note = f"yes (server cpu{server}, client cpu{client}"
    note += ", SMT siblings)" if client in siblings else ")"
    return Placement(server, client, note)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, sep, value = line.partition(":")
                if sep and key.strip() in ("model name", "Hardware", "Processor", "cpu model"):
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _dist_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def machine_facts(placement: Placement) -> dict[str, Any]:
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 1
    return {
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "python": f"{platform.python_version()} ({platform.python_implementation()})",
        "uvloop": _dist_version("uvloop"),
        "grpcio": _dist_version("grpcio"),
        "msgspec": _dist_version("msgspec"),
        "msgpack": _dist_version("msgpack"),
        "platform": platform.platform(),
        "pinned": placement.pinned,
        "pinning": placement.note,
    }


def header_line(facts: dict[str, Any]) -> str:
    cores = f"{facts['cores']}"
    if facts["usable_cores"] != facts["cores"]:
        cores += f" ({facts['usable_cores']} usable)"
    uvloop = facts["uvloop"] or "not installed (asyncio loop)"
    return (
        f"CPU: {facts['cpu_model']} | cores: {cores} | Python {facts['python']} | uvloop {uvloop} | "
        f"pinned: {facts['pinning']}"
    )
