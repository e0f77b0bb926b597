"""Per-sandbox cgroups (v1): ``pids`` caps the number of processes, ``memory`` all memory.

RLIMIT_NPROC is not enforced for root, so as root a fork bomb is only stopped by a cgroup. When
``/sys/fs/cgroup/pids`` is writable we create one cgroup per sandbox, set ``pids.max``, start the
zygote inside it (its workers and their children inherit it) and remove it at close. Otherwise the
caller falls back to RLIMIT_NPROC, which holds for non-root users only.

RLIMIT_AS counts mappings, not memory: a memfd or a tmpfs file grown with ``write`` takes host
memory that no process maps. Where ``/sys/fs/cgroup/memory`` is writable, a memory cgroup per
sandbox counts every page its processes charge (memfd and shmem included) against a limit set
once the payload is loaded.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from typing import TypeVar

PIDS_ROOT = "/sys/fs/cgroup/pids"
MEMORY_ROOT = "/sys/fs/cgroup/memory"
PREFIX = "rlm-graph-"
_G = TypeVar("_G", bound="PidsCgroup")


class PidsCgroup:
    """One cgroup directory under the pids controller (the base of the other kinds too)."""

    def __init__(self, path: str) -> None:
        self.path = path

    @classmethod
    def create(cls, max_pids: int, root: str = PIDS_ROOT) -> PidsCgroup | None:
        """Create a cgroup limited to ``max_pids`` tasks, or ``None`` when not possible here."""
        return cls._make(root, {"pids.max": str(max_pids)})

    @classmethod
    def _make(cls: type[_G], root: str, settings: dict[str, str]) -> _G | None:
        if not os.path.isdir(root) or not os.access(root, os.W_OK):
            return None
        _remove_stale(root)
        path = os.path.join(root, f"{PREFIX}{os.getpid()}-{uuid.uuid4().hex[:12]}")
        try:
            os.mkdir(path)
        except OSError:
            return None
        group = cls(path)
        try:
            for name, value in settings.items():
                group.write(name, value)
        except OSError:
            group.remove()
            return None
        return group

    def write(self, name: str, value: str) -> None:
        """Write one of the cgroup's control files."""
        with open(os.path.join(self.path, name), "w") as f:
            f.write(value)

    def read(self, name: str) -> str:
        """One of the cgroup's control files, or ``""`` if it cannot be read."""
        try:
            with open(os.path.join(self.path, name)) as f:
                return f.read()
        except OSError:
            return ""

    @property
    def procs_file(self) -> str:
        """Writing a pid here moves that process into the cgroup."""
        return os.path.join(self.path, "cgroup.procs")

    def add(self, pid: int) -> None:
        """Move process ``pid`` into the cgroup (its later children are born inside)."""
        with open(self.procs_file, "w") as f:
            f.write(str(pid))

    def pids(self) -> list[int]:
        """Processes currently in the cgroup."""
        try:
            with open(self.procs_file) as f:
                return [int(line) for line in f if line.strip()]
        except OSError:
            return []

    def kill_all(
        self, *, keep: set[int] | frozenset[int] = frozenset(), timeout: float = 2.0
    ) -> None:
        """SIGKILL every process in the cgroup (except ``keep``) until none is left."""
        deadline = time.monotonic() + timeout
        while True:
            victims = [pid for pid in self.pids() if pid not in keep]
            if not victims or time.monotonic() > deadline:
                return
            for pid in victims:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.002)

    def remove(self) -> None:
        """Kill what is left and delete the cgroup directory."""
        self.kill_all()
        deadline = time.monotonic() + 2.0
        while True:
            try:
                os.rmdir(self.path)
                return
            except FileNotFoundError:
                return
            except OSError:
                if time.monotonic() > deadline:
                    return
                time.sleep(0.005)


class MemoryCgroup(PidsCgroup):
    """One cgroup directory under the (v1) memory controller."""

    @classmethod
    def create_memory(cls, root: str = MEMORY_ROOT) -> MemoryCgroup | None:
        """Create a memory cgroup with no limit yet, or ``None`` when not possible here."""
        return cls._make(root, {})

    def usage(self) -> int:
        """Bytes charged to the cgroup now."""
        text = self.read("memory.usage_in_bytes").strip()
        return int(text) if text.isdigit() else 0

    def set_limit(self, limit: int) -> None:
        """Cap the cgroup's memory (and memory + swap, where the kernel counts swap).

        The kernel wants memory <= memory + swap at every step: raising, the second goes first.
        """
        current = self.read("memory.limit_in_bytes").strip()
        files = ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"]
        if current.isdigit() and limit > int(current):
            files.reverse()
        for name in files:
            try:
                self.write(name, str(limit))
            except OSError:
                if name == "memory.limit_in_bytes":
                    raise
                # No swap accounting in this kernel: memory alone is capped.

    def oom_kills(self) -> int:
        """How many processes the kernel killed for reaching the limit so far."""
        for line in self.read("memory.oom_control").splitlines():
            name, _, value = line.partition(" ")
            if name == "oom_kill" and value.strip().isdigit():
                return int(value)
        return 0


def entries_of_dead_hosts(root: str, prefix: str) -> list[str]:
    """Paths in ``root`` named ``<prefix><host pid>-...`` whose host process no longer exists.

    Sandbox hosts name their cgroups and scratch dirs after their pid, so what a killed host
    left behind can be found and removed by the next one.
    """
    try:
        names = [n for n in os.listdir(root) if n.startswith(prefix)]
    except OSError:
        return []
    stale = []
    for name in names:
        owner = name[len(prefix) :].split("-", 1)[0]
        if owner.isdigit() and not os.path.exists(f"/proc/{owner}"):
            stale.append(os.path.join(root, name))
    return stale


def _remove_stale(root: str) -> None:
    """Delete empty cgroups left by sandbox hosts that died without cleaning up."""
    for path in entries_of_dead_hosts(root, PREFIX):
        with contextlib.suppress(OSError):
            os.rmdir(path)  # fails harmlessly while processes remain
