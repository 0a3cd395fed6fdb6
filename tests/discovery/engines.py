"""Private engine instances for tests that must stop or restart an engine (never the shared one)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from meshkit.testing import ChildProcess, spawn


def _port_is_free(port: int, what: str) -> None:
    """Fail at once, naming the squatter's port, when something already listens where a private
    engine is to start: otherwise the new one dies unseen and the test talks to a stranger
    (a leftover of an interrupted run), whose restarts it cannot make."""
    import socket

    with socket.socket() as probe:
        probe.settimeout(0.5)
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            raise RuntimeError(
                f"{what} cannot start on 127.0.0.1:{port}: something listens there already (a leftover "
                f"of an interrupted test run?); see it with: ss -ltnp | grep {port}"
            )


class PrivateEtcd:
    """etcd on its own ports and data dir; ``stop``/``start`` keep the data (a restart)."""

    def __init__(
        self, client_port: int = 23791, peer_port: int = 23792, *, name: str = "private", cluster: str | None = None
    ) -> None:
        """``cluster``: the ``--initial-cluster`` of a member of several (``name=http://peer,…``);
        None: a cluster of this one member."""
        if shutil.which("etcd") is None:
            raise RuntimeError("etcd is not installed; run: bash scripts/engines.sh")
        self.port = client_port
        self._peer = peer_port
        self.name = name
        self._cluster = cluster or f"{name}=http://127.0.0.1:{peer_port}"
        self._dir = tempfile.mkdtemp(prefix="meshkit-etcd-")
        self._proc: ChildProcess | None = None

    def start(self) -> None:
        _port_is_free(self.port, "a private etcd")
        url, peer = f"http://127.0.0.1:{self.port}", f"http://127.0.0.1:{self._peer}"
        self._proc = spawn(
            [
                "etcd",
                "--name",
                self.name,
                "--data-dir",
                self._dir,
                "--listen-client-urls",
                url,
                "--advertise-client-urls",
                url,
                "--listen-peer-urls",
                peer,
                "--initial-advertise-peer-urls",
                peer,
                "--initial-cluster",
                self._cluster,
            ],
            name=f"private etcd {self.name}",
            port=self.port,
            stderr="discard",
            grace=30,
            timeout=30,
        )

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.stop()
        self._proc = None

    def kill(self) -> None:
        """SIGKILL: the member dies without a word (its data dir stays for a restart)."""
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait(10)
        self._proc = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)


class PrivateZooKeeper:
    """A standalone ZooKeeper on its own port and data dir."""

    SCRIPT = Path("/usr/share/zookeeper/bin/zkServer.sh")

    def __init__(self, port: int = 21811) -> None:
        if not self.SCRIPT.exists():
            raise RuntimeError("ZooKeeper is not installed; run: bash scripts/engines.sh")
        self.port = port
        self._dir = Path(tempfile.mkdtemp(prefix="meshkit-zk-"))
        (self._dir / "data").mkdir()
        (self._dir / "conf").mkdir()
        (self._dir / "conf" / "zoo.cfg").write_text(
            f"tickTime=500\ndataDir={self._dir / 'data'}\nclientPort={port}\nclientPortAddress=127.0.0.1\n"
            "admin.enableServer=false\nminSessionTimeout=1000\nmaxSessionTimeout=60000\n"
        )
        log4j = Path("/etc/zookeeper/conf/log4j.properties")
        if log4j.exists():
            shutil.copy(log4j, self._dir / "conf")
        self._proc: ChildProcess | None = None

    def start(self) -> None:
        _port_is_free(self.port, "a private ZooKeeper")
        self._proc = spawn(
            [str(self.SCRIPT), "start-foreground", str(self._dir / "conf" / "zoo.cfg")],
            name="private ZooKeeper",
            port=self.port,
            stderr="discard",
            env={"ZOOCFGDIR": str(self._dir / "conf"), "ZOO_LOG_DIR": str(self._dir)},
            grace=30,  # SIGTERM to its process group (the script and its java)
            timeout=60,
        )

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.stop()
        self._proc = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)
