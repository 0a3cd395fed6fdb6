"""Ctrl-C on the demo's live view in a terminal leaves exactly one final panel on the screen."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TITLE = "meshkit demo — HTTP → gateway → order"
_CSI = re.compile(r"\x1b\[([0-9;?]*)([A-Za-z])")


def screen(output: str) -> list[str]:
    """The lines a terminal shows after ``output`` (scrollback included), for the control
    sequences rich's live view writes: cursor up/down/column, erase line, styles (ignored)."""
    lines: list[list[str]] = [[]]
    row = col = 0
    pos = 0
    while pos < len(output):
        match = _CSI.match(output, pos)
        if match:
            params, op = match.groups()
            n = int(params) if params.isdigit() else None
            if op == "A":
                row = max(0, row - (n or 1))
            elif op == "B":
                row += n or 1
            elif op == "G":
                col = (n or 1) - 1
            elif op == "K":
                line = lines[row] if row < len(lines) else []
                if n == 2:
                    line.clear()
                elif not n:
                    del line[col:]
            pos = match.end()
            continue
        char = output[pos]
        pos += 1
        if char == "\r":
            col = 0
        elif char == "\n":
            row += 1
            col = 0
        elif char >= " ":
            while row >= len(lines):
                lines.append([])
            line = lines[row]
            line.extend(" " * (col - len(line)))
            if col < len(line):
                line[col] = char
            else:
                line.append(char)
            col += 1
        while row >= len(lines):
            lines.append([])
    return ["".join(line).rstrip() for line in lines]


def test_the_screen_helper_replays_a_redraw() -> None:
    assert screen("one\ntwo\n\r\x1b[2K\x1b[1A\x1b[2K\x1b[1A\x1b[2Kthree\n") == ["three", "", ""]
    assert screen("\x1b[1mab\x1b[0mcd\rX\x1b[K") == ["X"]


def _read_until(fd: int, done: object, deadline: float) -> str:
    chunks: list[bytes] = []
    while time.monotonic() < deadline:
        if callable(done) and done(b"".join(chunks).decode("utf-8", "replace")):
            break
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                data = os.read(fd, 65536)
            except OSError:  # EIO: the other side of the terminal is closed
                break
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks).decode("utf-8", "replace")


@pytest.mark.slow
def test_ctrl_c_leaves_one_final_panel() -> None:
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 60, 200, 0, 0))  # room for the whole panel
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env["TERM"] = "xterm"
    proc = subprocess.Popen(
        [sys.executable, "-m", "meshkit", "demo", "--gateway-port", "0", "--rate", "50"],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        cwd=ROOT,
        env=env,
    )
    os.close(slave)
    try:
        # The live view is up once its title has been drawn a few times (refreshes).
        shown = _read_until(master, lambda text: text.count(TITLE) >= 3, time.monotonic() + 30)
        assert shown.count(TITLE) >= 3, shown
        proc.send_signal(signal.SIGINT)
        rest = _read_until(master, None, time.monotonic() + 30)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    lines = screen(shown + rest)
    assert sum(TITLE in line for line in lines) == 1, "\n".join(lines)
    assert any("total ok" in line for line in lines), "\n".join(lines)
