"""Processes in tests: commands run as a terminal runs a foreground job (for Ctrl-C tests),
and the children a process has (for what it leaves behind)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path


@contextlib.contextmanager
def foreground_job(
    cmd: Sequence[str], *, cwd: Path, env: dict[str, str]
) -> Iterator[subprocess.Popen[str]]:
    """``cmd`` in its own process group with SIGINT at its default; killed if still running."""
    proc = subprocess.Popen(
        list(cmd),
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        # A background job of a non-interactive shell (as CI may run us) inherits SIGINT
        # ignored; a terminal's foreground job has it at its default.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def read_until(proc: subprocess.Popen[str], found: Callable[[str], bool]) -> str:
    """stderr read up to and including the first line for which ``found`` is true."""
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if found(line):
            break
    return "".join(seen)


def ctrl_c(proc: subprocess.Popen[str], timeout: float) -> str:
    """Send SIGINT to the job's process group (as Ctrl-C does); the rest of its stderr."""
    assert proc.poll() is None, "the command ended before it could be interrupted"
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=timeout)
    return err


def child_pids(parent: int | None = None) -> list[int]:
    """Direct children of ``parent`` (default: this process), zombies included."""
    ppid = str(os.getpid() if parent is None else parent)
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[1] == ppid:
                pids.append(int(entry))
    return pids
