"""Real network partitions on one machine: a Linux network namespace joined to this one by a veth
pair on a private /30, whose link can be cut (no carrier: packets vanish, TCP retransmits into
the void, exactly like a pulled cable) and healed. Needs root (CAP_NET_ADMIN) and iproute2;
``available()`` says whether this runner has them; the FaultProxy's ``partition()`` is the
fallback where it does not.

    with NetnsLink("mk-a") as link:
        proc = subprocess.Popen(link.exec_args(["python", "-m", "meshkit", "run", ..., "--host", link.inside]))
        link.cut()      # the namespace is unreachable, silently
        link.heal()
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from collections.abc import Sequence

_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def available() -> bool:
    """Root and the ``ip`` command: what creating namespaces and veth pairs takes."""
    return hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("ip") is not None


class NetnsLink:
    """Namespace ``name`` with address ``inside``, reached from here at ``outside``, on a /30 of
    its own: ``subnet=N`` picks 10.77.N.0/30; by default the /30 is derived from the name, in
    10.78.0.0/16 (16,384 of them). Interface names are derived from the name too (Linux allows 15
    characters), so two links never share one. Removed on exit, even after a failure."""

    def __init__(self, name: str, subnet: int | None = None) -> None:
        if not _NAME.fullmatch(name) or name in (".", ".."):
            raise ValueError(f"a namespace name is 1-64 of [A-Za-z0-9_.-], got {name!r}")
        digest = hashlib.sha1(name.encode(), usedforsecurity=False).hexdigest()
        if subnet is None:
            index = int(digest[:8], 16) % 16384
            base = f"10.78.{index // 64}.{index % 64 * 4}"
        elif 0 < subnet < 255:
            base = f"10.77.{subnet}.0"
        else:
            raise ValueError(f"subnet is the N of 10.77.N.0/30, 1..254, got {subnet}")
        prefix, _, last = base.rpartition(".")
        self.name = name
        self.outside = f"{prefix}.{int(last) + 1}"
        self.inside = f"{prefix}.{int(last) + 2}"
        self._host_if = f"mk{digest[:10]}h"
        self._ns_if = f"mk{digest[:10]}n"

    def _ip(self, *args: str, netns: bool = False) -> None:
        cmd = ["ip", "netns", "exec", self.name, "ip", *args] if netns else ["ip", *args]
        subprocess.run(cmd, check=True, capture_output=True, text=True)

    def create(self) -> None:
        self.remove()  # a leftover from an interrupted run
        taken = subprocess.run(["ip", "-o", "addr", "show"], capture_output=True, text=True).stdout
        if re.search(rf"inet {re.escape(self.outside)}/", taken):
            raise ValueError(
                f"{self.outside} is already an address of this machine (another link on the same /30?): "
                "pass a different subnet="
            )
        self._ip("netns", "add", self.name)
        self._ip("link", "add", self._host_if, "type", "veth", "peer", "name", self._ns_if)
        self._ip("link", "set", self._ns_if, "netns", self.name)
        self._ip("addr", "add", f"{self.outside}/30", "dev", self._host_if)
        self._ip("link", "set", self._host_if, "up")
        self._ip("addr", "add", f"{self.inside}/30", "dev", self._ns_if, netns=True)
        self._ip("link", "set", self._ns_if, "up", netns=True)
        self._ip("link", "set", "lo", "up", netns=True)

    def exec_args(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside the namespace."""
        return ["ip", "netns", "exec", self.name, *argv]

    def cut(self) -> None:
        """Take the namespace's end of the link down: no carrier, packets dropped without a word."""
        self._ip("link", "set", self._ns_if, "down", netns=True)

    def heal(self) -> None:
        self._ip("link", "set", self._ns_if, "up", netns=True)

    def remove(self) -> None:
        subprocess.run(["ip", "link", "del", self._host_if], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)

    def __enter__(self) -> NetnsLink:
        try:
            self.create()
        except BaseException:
            self.remove()  # a half-made namespace must not outlive a failed start
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()
