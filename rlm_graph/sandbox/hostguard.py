"""Keep a process-mode worker out of the host process (issue 11 item 9).

A process-mode worker runs as the host's user, so by default the kernel lets it ptrace the host:
read ``/proc/<host>/environ`` (API keys) and ``/proc/<host>/mem``, copy memory with
``process_vm_readv`` and take the host's sockets with ``pidfd_getfd``. Two measures, both once
per host process:

- ``PR_SET_DUMPABLE=0``: the host can then be reached that way only with ``CAP_SYS_PTRACE``,
  which the worker drops when it runs as root (``child/confine.py``, ``drop_ptrace_capability``).
  Side effects: no core dumps of the host; debuggers and profilers that attach to it (gdb,
  py-spy) need ``CAP_SYS_PTRACE``.
- Root without ``CAP_SYS_PTRACE`` can still read the *read-mode* views of a non-dumpable root
  process (``environ``, ``maps``, ``auxv``: measured on Linux 6.18), so the strings of the
  initial environment, which ``/proc/<pid>/environ`` shows, are moved to the heap (``setenv``
  of each, through ``os.environ``) and the original block is zeroed. ``os.environ`` and C
  ``getenv`` keep working; only a pointer a C library took from ``getenv`` before this point
  would see an empty string.
"""

from __future__ import annotations

import ctypes
import os
import threading

PR_SET_DUMPABLE = 4
PR_GET_DUMPABLE = 3
# Fields of /proc/self/stat after "pid (comm)": env_start and env_end are fields 50 and 51.
_ENV_START_INDEX = 50 - 3
_ENV_END_INDEX = 51 - 3

_lock = threading.Lock()
_done: list[bool] = []  # set once; a list only so the function can test it without `global`


def protect_host() -> bool:
    """Apply both measures once; whether both held (each is best effort)."""
    with _lock:
        if not _done:
            _done.append(make_host_undumpable() & scrub_initial_environment())
        return _done[0]


def make_host_undumpable() -> bool:
    """Set ``PR_SET_DUMPABLE=0`` on this process; whether it is non-dumpable now."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
            return False
        return bool(libc.prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def scrub_initial_environment() -> bool:
    """Zero the initial environment block once nothing points into it; whether it was zeroed."""
    region = _environment_region()
    if region is None:
        return False
    start, end = region
    for key, value in list(os.environb.items()):
        os.environb[key] = value  # setenv: a fresh heap copy replaces the pointer
    try:
        libc = ctypes.CDLL(None)
        envp = ctypes.POINTER(ctypes.c_void_p).in_dll(libc, "environ")
    except (OSError, ValueError):
        return False
    index = 0
    while envp[index]:
        if start <= int(envp[index] or 0) < end:
            return False  # an entry os.environ does not hold (no "="): leave the block alone
        index += 1
    ctypes.memset(start, 0, end - start)
    return True


def _environment_region() -> tuple[int, int] | None:
    try:
        with open("/proc/self/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        start, end = int(fields[_ENV_START_INDEX]), int(fields[_ENV_END_INDEX])
    except (OSError, IndexError, ValueError):
        return None
    return (start, end) if 0 < start < end else None
