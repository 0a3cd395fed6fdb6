"""The admin token file: where ``meshkit run`` leaves the token it generated (private to this user)
and where ``meshkit switch`` finds it for a process on this machine."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def admin_token_path(port: int) -> Path:
    """Where ``meshkit run`` leaves the admin token it generated for the process on ``port``:
    readable by this user only, and where ``meshkit switch`` looks for a local target's token."""
    base = Path(os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()) / f"meshkit-{os.getuid()}"
    return base / f"admin-{port}.token"


def write_admin_token(port: int, token: str) -> Path:
    path = admin_token_path(port)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return path


def local_token(target: str) -> str | None:
    """The token ``meshkit run`` generated for a process on this machine, if it left one."""
    host, _, port = target.rpartition(":")
    if host not in ("127.0.0.1", "localhost", "::1", "[::1]") or not port.isdigit():
        return None
    try:
        return admin_token_path(int(port)).read_text().strip() or None
    except OSError:
        return None
