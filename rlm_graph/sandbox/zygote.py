"""Host-side handle on the zygote process: spawn it, ask it to fork, signal and kill workers."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO, Protocol

from .cgroup import PidsCgroup
from .control import ControlClient, ZygoteDied
from .template import spawn_zygote

__all__ = ["ZygoteDied", "ZygoteHandle", "describe_wait_status"]

LOG_TAIL_BYTES = 2000
STOP_SECONDS = 3.0


class Process(Protocol):
    """What we need of the zygote process: a ``Popen``, or a template-forked process."""

    pid: int
    returncode: int | None

    def poll(self) -> int | None: ...
    def wait(self, timeout: float | None = None) -> int: ...
    def kill(self) -> None: ...


class ZygoteHandle:
    """The host's handle on one running zygote: its process and its control client."""

    def __init__(self, proc: Process, ctl: socket.socket, log: BinaryIO) -> None:
        self.proc = proc
        self.ctl = ctl
        self.log = log
        self.control = ControlClient(
            ctl,
            name="sandbox zygote",
            exited=lambda: self.proc.poll() is not None,
            describe_death=self.death_reason,
        )
        self.vm_size = 0
        self.payload_bytes = 0

    @classmethod
    def spawn(
        cls,
        argv_for_fds: Callable[[int, int], list[str]],
        *,
        env: dict[str, str],
        cwd: str,
    ) -> tuple[ZygoteHandle, socket.socket]:
        """Start the zygote; returns it and the host end of its payload socket.

        ``argv_for_fds(control_fd, payload_fd)`` builds its argv. The caller streams the payload
        into the returned socket, closes it, then calls :meth:`wait_ready`.
        """
        log = new_log()
        with _closed_on_error(log), _socket_pairs() as (host_end, child_end, data_host, data_child):
            fds = (child_end.fileno(), data_child.fileno())
            argv = argv_for_fds(*fds)
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                env=env,
                cwd=cwd,
                pass_fds=fds,
                start_new_session=True,
                close_fds=True,
            )
        return cls(proc, host_end, log), data_host

    @classmethod
    def fork_from_template(
        cls, paths: list[str], *, scratch: str, cgroups: list[PidsCgroup]
    ) -> tuple[ZygoteHandle, socket.socket]:
        """Like :meth:`spawn`, but forked from the shared warm template process."""
        log = new_log()
        with _closed_on_error(log), _socket_pairs() as (host_end, child_end, data_host, data_child):
            fds = (child_end.fileno(), data_child.fileno(), log.fileno())
            proc = spawn_zygote(paths, scratch, fds)
            # Before it gets the payload, so before it can fork anything.
            for cgroup in cgroups:
                try:
                    cgroup.add(proc.pid)
                except OSError:
                    proc.kill()
                    proc.close()
                    raise
        return cls(proc, host_end, log), data_host

    def wait_ready(self, timeout: float) -> None:
        """Block until the zygote has loaded ``context``."""
        reply = self.control.receive(timeout, what="loading the payload")
        if reply.get("op") != "ready":
            raise ZygoteDied(f"unexpected first message from the zygote: {reply!r}")
        self.vm_size = int(reply.get("vm_size", 0))
        self.payload_bytes = int(reply.get("payload_bytes", 0))

    def request(self, msg: dict[str, Any], fds: tuple[int, ...] = (), timeout: float = 30.0) -> Any:
        """Send one command and return its reply; raises :class:`ZygoteDied` if it is gone."""
        return self.control.request(msg, fds, timeout)

    def death_reason(self) -> str:
        """Describe why the zygote stopped, with the tail of its stderr."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(0.5)
        code = self.proc.returncode
        log = read_tail(self.log, LOG_TAIL_BYTES).decode("utf-8", "replace").strip()
        how = "is not responding" if code is None else _describe_status(code)
        return f"the sandbox zygote process {how}" + (f":\n{log}" if log else "")

    def alive(self) -> bool:
        """Whether the zygote process is still running."""
        return self.proc.poll() is None

    def ask_to_stop(self) -> None:
        """Ask the zygote to kill everything below it and exit; returns at once.

        Safe from any thread. Without a pids cgroup this is what reaches daemons that left the
        workers' process groups: they were reparented to the zygote, which SIGKILL would orphan.
        """
        self.control.tell({"op": "shutdown"})

    def set_cpu_budget(self, pid: int, seconds: float, what: str) -> None:
        """Give worker ``pid`` ``seconds`` of CPU from now (``what``: "block" or "idle");
        the zygote kills it past that. Sent without waiting for an answer."""
        msg = {"op": "cpu_budget", "pid": pid, "seconds": seconds, "what": what, "noreply": True}
        self.control.tell(msg)

    def kill(self) -> None:
        """SIGKILL the zygote (safe against pid reuse); its workers are killed separately."""
        with contextlib.suppress(OSError):
            self.proc.kill()

    def close(self) -> None:
        """Ask the zygote to kill its tree and exit; kill it if it does not."""
        if self.proc.poll() is None:
            self.ask_to_stop()
            try:
                # Its own kill loop gives up after 2 s (a tree that keeps forking).
                self.proc.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                self.kill()
                self.proc.wait()
        closer = getattr(self.proc, "close", None)
        if closer is not None:
            closer()
        self.ctl.close()
        self.log.close()


def new_log() -> BinaryIO:
    """A file for a zygote's stderr that has no name (``O_TMPFILE``, or unlinked at once).

    The host reads it only through this handle: it lives outside the scratch dir, so nothing the
    sandbox writes (a symlink to a host secret, a FIFO) can be where the host looks for it.
    """
    return tempfile.TemporaryFile(prefix="rlm-zygote-log-")


def read_tail(log: BinaryIO, limit: int) -> bytes:
    """The last ``limit`` bytes of ``log``, read through its fd without moving its offset."""
    try:
        size = os.fstat(log.fileno()).st_size
        start = max(0, size - limit)
        return os.pread(log.fileno(), size - start, start)
    except (OSError, ValueError):
        return b""


@contextlib.contextmanager
def _closed_on_error(log: BinaryIO) -> Iterator[None]:
    try:
        yield
    except BaseException:
        log.close()
        raise


@contextlib.contextmanager
def _socket_pairs() -> Iterator[tuple[socket.socket, socket.socket, socket.socket, socket.socket]]:
    """Control (SEQPACKET) and payload (STREAM) socketpairs for a new zygote.

    The zygote's ends are always closed on exit (it holds its own copies by then); ours only if
    starting it failed.
    """
    host_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    data_host, data_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        yield host_end, child_end, data_host, data_child
    except BaseException:
        host_end.close()
        data_host.close()
        raise
    finally:
        child_end.close()
        data_child.close()


def _describe_status(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"was killed by {name}"
    return f"exited with status {code}"


def describe_wait_status(status: int | None) -> str:
    """Human text for a raw ``waitpid`` status."""
    if status is None:
        return "ended"
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        return f"was killed by {name}"
    if os.WIFEXITED(status):
        return f"exited with status {os.WEXITSTATUS(status)}"
    return f"ended (status {status})"
