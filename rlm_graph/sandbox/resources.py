"""Everything a sandbox owns outside the host process: scratch dir, cgroup, zygote, worker.

Kept apart from :class:`~rlm_graph.sandbox.sandbox.Sandbox` so that a ``weakref.finalize`` can
clean up without holding a reference to the sandbox itself.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import socket
import sys
import tempfile
import threading
from typing import Any

from .cgroup import MemoryCgroup, PidsCgroup, entries_of_dead_hosts
from .channel import WorkerHandle
from .child.frames import BadFrame
from .control import CHILD_DIR, ENTRY_SCRIPT
from .errors import SandboxError
from .payload import check_payload, send_payload
from .zygote import ZygoteDied, ZygoteHandle, describe_wait_status

_MIB = 1 << 20
#: Room in the memory cgroup beyond the payload and a worker's own allowance (interpreter,
#: page cache, bubblewrap).
MEMORY_SLACK = 256 * _MIB
_READY_TIMEOUT = 30.0
SCRATCH_PREFIX = "rlm-sandbox-"


def lost_variables_notice() -> str:
    """What the model is told after its worker was replaced."""
    return (
        "A fresh worker was started: ALL VARIABLES, FUNCTIONS AND IMPORTS FROM EARLIER BLOCKS "
        "ARE LOST (only `context`, `query` and the built-in helpers remain). Re-create what you "
        "need before using it."
    )


class Resources:
    """The processes, files and cgroup of one sandbox; :meth:`close` is idempotent."""

    def __init__(self, *, mode: str, max_processes: int) -> None:
        self.mode = mode
        self.max_processes = max_processes
        self.scratch: str | None = None
        self.cgroup: PidsCgroup | None = None
        self.memory: MemoryCgroup | None = None
        self.oom_kills_seen = 0
        self.zygote: ZygoteHandle | None = None
        self.worker: WorkerHandle | None = None
        self.address_space_bytes = 0
        self.nproc: int | None = None
        #: Why the zygote killed the last worker it was asked to kill, when it had (CPU budget).
        self.kill_reason: str | None = None
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        self.lock = threading.RLock()
        self.closed = False

    def wake(self) -> None:
        """Wake the run loop (a callback finished, or the sandbox is closing)."""
        with contextlib.suppress(OSError):
            os.write(self.wake_w, b"!")

    # -- zygote ---------------------------------------------------------------------------------
    def start_zygote(
        self, context: Any, *, memory_limit_mb: int | None, timeout: float, use_template: bool
    ) -> None:
        """Start the zygote, stream it the payload and wait until it holds ``context``."""
        with self.lock:
            if self.closed:
                raise SandboxError("the sandbox is closed")
            check_payload(context)
            scratch = self._prepare()
            zygote, data = None, None
            if self.mode == "process" and use_template:
                with contextlib.suppress(OSError, SandboxError):
                    zygote, data = ZygoteHandle.fork_from_template(
                        _site_dirs(), scratch=scratch, cgroups=self._cgroups()
                    )
            if zygote is None or data is None:
                zygote, data = ZygoteHandle.spawn(
                    self._zygote_argv, env={"MALLOC_ARENA_MAX": "2"}, cwd=scratch
                )
            self.zygote = zygote
            try:
                with data:
                    send_payload(context, data)
            except OSError:
                pass  # the zygote died while loading: wait_ready reports why
            except BaseException:  # a bad payload, or a stream whose store failed mid-way
                self.stop_zygote()
                raise
            zygote.wait_ready(timeout)
            if memory_limit_mb is None:
                self.address_space_bytes = 1024 * _MIB + 3 * zygote.payload_bytes
            else:
                self.address_space_bytes = int(memory_limit_mb) * _MIB
            self._limit_memory()

    def _prepare(self) -> str:
        """Create the scratch dir and the cgroups (once); returns the scratch dir."""
        if self.scratch is None:
            _remove_stale_scratch()
            self.scratch = tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-")
        if self.cgroup is None:
            # Room for the zygote, the worker and, in strict mode, bubblewrap's own processes.
            self.cgroup = PidsCgroup.create(self.max_processes + 4)
        if self.cgroup is None and os.geteuid() != 0:
            self.nproc = _nproc_limit(self.max_processes)
        if self.memory is None:
            self.memory = MemoryCgroup.create_memory()
        return self.scratch

    def _cgroups(self) -> list[PidsCgroup]:
        return [group for group in (self.cgroup, self.memory) if group is not None]

    def _zygote_argv(self, ctl_fd: int, payload_fd: int) -> list[str]:
        assert self.scratch is not None
        argv = [
            sys.executable, "-I", "-S", "-X", "utf8", ENTRY_SCRIPT,
            "--ctl-fd", str(ctl_fd), "--payload-fd", str(payload_fd), "--scratch", self.scratch,
        ]  # fmt: skip
        for path in _site_dirs():
            argv += ["--path", path]
        if self.mode == "strict":
            argv = _strict_wrap(argv, scratch=self.scratch, fds=[ctl_fd, payload_fd])
        procs = [group.procs_file for group in self._cgroups()]
        if procs:
            # The shell joins the cgroups before exec, so nothing escapes them, not even
            # processes bubblewrap forks at once.
            join = 'echo $$ > "$0" && echo $$ > "$1" && shift && unset PWD && exec "$@"'
            argv = ["/bin/sh", "-c", join, procs[0], procs[-1], *argv]
        return argv

    def _limit_memory(self) -> None:
        """Cap the memory cgroup: what the loaded zygote holds, plus what a worker may add."""
        if self.memory is None:
            return
        with contextlib.suppress(OSError):  # the previous limit (or none) then stays
            self.memory.set_limit(self.memory.usage() + self.address_space_bytes + MEMORY_SLACK)
        self.oom_kills_seen = self.memory.oom_kills()

    def memory_note(self) -> str | None:
        """Why the last worker died, when it was the memory cgroup's limit (once)."""
        if self.memory is None:
            return None
        kills = self.memory.oom_kills()
        if kills <= self.oom_kills_seen:
            return None
        self.oom_kills_seen = kills
        limit = self.memory.read("memory.limit_in_bytes").strip()
        mib = int(limit) // _MIB if limit.isdigit() else 0
        return (
            f"the sandbox's memory limit ({mib:,} MiB for all its processes) was reached; "
            "memory that RLIMIT_AS does not see (memfd, /dev/shm or /tmp files) counts too"
        )

    def stop_zygote(self) -> None:
        """Kill the zygote and the current worker (used before restarting everything)."""
        with self.lock:
            self._drop_worker()
            if self.zygote is not None:
                self.zygote.close()
                self.zygote = None
            for group in self._cgroups():
                group.kill_all()

    # -- workers --------------------------------------------------------------------------------
    def fork_worker(self, params: dict[str, Any]) -> WorkerHandle:
        """Ask the zygote for a fresh worker and wait until it is ready."""
        with self.lock:
            zygote = self._live_zygote()
            host_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            out_r, out_w = os.pipe()
            try:
                msg = {
                    "op": "fork",
                    "address_space_bytes": self.address_space_bytes,
                    "nproc": self.nproc,
                    **params,
                }
                reply = zygote.request(msg, fds=(child_sock.fileno(), out_w))
            except BaseException:
                host_sock.close()
                os.close(out_r)
                raise
            finally:
                child_sock.close()
                os.close(out_w)
            os.set_blocking(out_r, False)
            worker = WorkerHandle(
                int(reply["pid"]),
                host_sock,
                out_r,
                params["max_frame_bytes"],
                host_pid=self.mode == "process",
            )
            self.worker = worker
        self._wait_ready(worker)
        return worker

    def _wait_ready(self, worker: WorkerHandle) -> None:
        ready, _, _ = select.select([worker.sock], [], [], _READY_TIMEOUT)
        data = b""
        if ready:
            with contextlib.suppress(OSError):
                data = worker.sock.recv(1 << 16)
        try:
            messages = worker.reader.feed(data) if data else []
        except BadFrame:
            messages = []
        if any(isinstance(m, dict) and m.get("op") == "ready" for m in messages):
            return
        output = b""
        with contextlib.suppress(OSError):
            output = os.read(worker.out_fd, 1 << 16)
        status = None
        with contextlib.suppress(SandboxError):
            status = self.kill_worker(worker)
        raise SandboxError(
            f"the sandbox worker failed to start (it {describe_wait_status(status)})"
            + (f":\n{output.decode('utf-8', 'replace').strip()}" if output else "")
        )

    def signal_worker(self, worker: WorkerHandle, sig: int) -> None:
        """Send ``sig`` to the worker process (directly when its pid is the host's view)."""
        if worker.signal(sig):
            return
        self._live_zygote().request({"op": "signal", "pid": worker.pid, "sig": int(sig)})

    def set_cpu_budget(self, worker: WorkerHandle, seconds: float, what: str) -> None:
        """Let the zygote kill ``worker`` once it uses ``seconds`` more CPU (never blocks)."""
        zygote = self.zygote
        if zygote is not None and not self.closed:
            zygote.set_cpu_budget(worker.pid, seconds, what)

    def kill_worker(self, worker: WorkerHandle) -> int | None:
        """Kill the worker's process group, reap it and return its wait status."""
        with self.lock:
            self.kill_reason = None
            worker.kill_group()
            # With our cgroup the host sweeps stray processes itself (cheaper than the zygote's
            # scan of /proc), just below.
            sweeper = self.cgroup if self.mode == "process" else None
            try:
                msg = {"op": "kill", "pid": worker.pid, "sweep": sweeper is None}
                reply = self._live_zygote().request(msg)
            finally:
                if sweeper is not None and self.zygote:
                    # Grandchildren that left the worker's process group.
                    sweeper.kill_all(keep={self.zygote.proc.pid})
                worker.close()
                if self.worker is worker:
                    self.worker = None
            status = reply.get("status")
            reason = reply.get("reason")
            self.kill_reason = reason if isinstance(reason, str) else None
            return None if status is None else int(status)

    def kill_worker_children(self, worker: WorkerHandle) -> None:
        """Kill the processes the worker started (its process group, minus the worker itself)."""
        with self.lock:
            self._live_zygote().request({"op": "kill_others", "pid": worker.pid})
            if self.cgroup is not None and self.mode == "process" and self.zygote:
                # Descendants that moved to a process group of their own.
                keep = {self.zygote.proc.pid, worker.pid}
                self.cgroup.kill_all(keep=keep)

    def _drop_worker(self) -> None:
        worker, self.worker = self.worker, None
        if worker is None:
            return
        worker.kill_group()
        worker.close()

    def _live_zygote(self) -> ZygoteHandle:
        if self.closed:
            raise SandboxError("the sandbox is closed")
        if self.zygote is None:
            raise ZygoteDied("the sandbox zygote is not running")
        return self.zygote

    # -- teardown -------------------------------------------------------------------------------
    def kill_processes(self) -> None:
        """SIGKILL every process of the sandbox without touching fds (safe from any thread)."""
        worker, zygote, cgroup = self.worker, self.zygote, self.cgroup
        if worker is not None:
            worker.kill_group()
        if zygote is not None:
            # Not a SIGKILL: the zygote kills its whole tree first (stop_zygote kills it if it
            # does not exit in time).
            zygote.ask_to_stop()
        if cgroup is not None:
            cgroup.kill_all()

    def close(self) -> None:
        """Kill everything, reap the zygote, close fds, remove the scratch dir and the cgroup."""
        with self.lock:
            if self.closed:
                return
            self.kill_processes()
            self.stop_zygote()
            self.closed = True
            for group in self._cgroups():
                group.remove()
            self.cgroup = self.memory = None
            if self.scratch is not None:
                shutil.rmtree(self.scratch, ignore_errors=True)
                self.scratch = None
            for fd in (self.wake_r, self.wake_w):
                with contextlib.suppress(OSError):
                    os.close(fd)


def _strict_wrap(argv: list[str], *, scratch: str, fds: list[int]) -> list[str]:
    try:
        from . import strict
    except ImportError as exc:
        raise SandboxError(
            "strict sandbox mode is not available: rlm_graph.sandbox.strict cannot be "
            f"imported ({exc})"
        ) from None
    if not os.path.exists(os.path.join(CHILD_DIR, "confine.py")):
        raise SandboxError("strict sandbox mode is not available: child/confine.py is missing")
    import sysconfig

    read_only = {
        sys.prefix,
        sys.base_prefix,
        sys.exec_prefix,
        sys.base_exec_prefix,
        CHILD_DIR,
        *_site_dirs(),
        *(p for p in (sysconfig.get_paths().get(k) for k in ("stdlib", "platstdlib")) if p),
    }
    wrapped: list[str] = strict.wrap_command(
        argv, scratch_dir=scratch, read_only_paths=sorted(read_only), pass_fds=fds
    )
    return wrapped


def _remove_stale_scratch() -> None:
    """Delete scratch dirs whose host process is gone (it was killed before it could clean up)."""
    for path in entries_of_dead_hosts(tempfile.gettempdir(), SCRATCH_PREFIX):
        shutil.rmtree(path, ignore_errors=True)


def _site_dirs() -> list[str]:
    """site-packages directories of this interpreter (the worker runs with ``-S``)."""
    import site

    return [p for p in site.getsitepackages() if os.path.isdir(p)]


def _nproc_limit(headroom: int) -> int:
    """RLIMIT_NPROC counts all of the user's processes, so allow the current count + headroom."""
    uid = os.getuid()
    count = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    count += 1
    return count + headroom
