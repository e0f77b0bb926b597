"""Run a command on a pseudo-terminal and collect everything it draws, with timestamps."""

from __future__ import annotations

import os
import select
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Screen:
    """What a command wrote to its terminal: ``chunks`` as (seconds since start, bytes)."""

    returncode: int
    chunks: list[tuple[float, bytes]] = field(default_factory=list)

    @property
    def data(self) -> bytes:
        return b"".join(c for _, c in self.chunks)

    @property
    def text(self) -> str:
        return self.data.decode("utf-8", "replace")


def run_in_pty(
    cmd: Sequence[str],
    *,
    cwd: Path,
    env: dict[str, str],
    stdin_tty: bool = False,
    timeout: float = 120,
    reply: tuple[bytes, bytes] | None = None,
) -> Screen:
    """Run ``cmd`` with stdout and stderr on one pty (stdin too when ``stdin_tty``, else
    /dev/null) until it exits and the terminal is drained. ``reply=(seen, keys)`` types
    ``keys`` once ``seen`` has appeared on the screen."""
    leader, follower = os.openpty()
    proc = subprocess.Popen(
        list(cmd),
        cwd=cwd,
        env=env,
        stdin=follower if stdin_tty else subprocess.DEVNULL,
        stdout=follower,
        stderr=follower,
    )
    os.close(follower)
    start = time.monotonic()
    screen = Screen(returncode=-1)
    try:
        while time.monotonic() - start < timeout:
            ready, _, _ = select.select([leader], [], [], 0.2)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                data = os.read(leader, 65536)
            except OSError:  # EIO: every writer closed the terminal
                break
            if not data:
                break
            screen.chunks.append((time.monotonic() - start, data))
            if reply is not None and reply[0] in screen.data:
                os.write(leader, reply[1])
                reply = None
    finally:
        os.close(leader)
        if proc.poll() is None:
            proc.kill()
        screen.returncode = proc.wait(timeout=30)
    return screen
