"""Host-side handle on the zygote process: spawn it, ask it to fork, signal and kill workers."""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from .cgroup import PidsCgroup
from .errors import SandboxError

WORKER_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_worker.py")
_REPLY_MAX = 1 << 16


class ZygoteDied(SandboxError):
    """The zygote process exited or stopped answering."""


class Process(Protocol):
    """What we need of the zygote process: a ``Popen``, or a template-forked process."""

    pid: int
    returncode: int | None

    def poll(self) -> int | None: ...
    def wait(self, timeout: float | None = None) -> int: ...
    def kill(self) -> None: ...


class ZygoteProcess:
    """A running zygote and its control socket (SOCK_SEQPACKET, so messages keep their bounds)."""

    def __init__(self, proc: Process, ctl: socket.socket, log_path: str) -> None:
        self.proc = proc
        self.ctl = ctl
        self.log_path = log_path
        self.lock = threading.Lock()
        self.vm_size = 0
        self.payload_bytes = 0

    @classmethod
    def spawn(
        cls,
        argv_for_fds: Callable[[int, int], list[str]],
        *,
        env: dict[str, str],
        cwd: str,
        log_path: str,
    ) -> tuple[ZygoteProcess, socket.socket]:
        """Start the zygote; returns it and the host end of its payload socket.

        ``argv_for_fds(control_fd, payload_fd)`` builds its argv. The caller streams the payload
        into the returned socket, closes it, then calls :meth:`wait_ready`.
        """
        with _socket_pairs() as (host_end, child_end, data_host, data_child):
            fds = (child_end.fileno(), data_child.fileno())
            argv = argv_for_fds(*fds)
            with open(log_path, "wb") as log:
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
        return cls(proc, host_end, log_path), data_host

    @classmethod
    def fork_from_template(
        cls, paths: list[str], *, scratch: str, log_path: str, cgroup: PidsCgroup | None
    ) -> tuple[ZygoteProcess, socket.socket]:
        """Like :meth:`spawn`, but forked from the shared warm template process."""
        from .template import spawn_zygote

        with _socket_pairs() as (host_end, child_end, data_host, data_child):
            with open(log_path, "wb") as log:
                fds = (child_end.fileno(), data_child.fileno(), log.fileno())
                proc = spawn_zygote(paths, scratch, fds)
            if cgroup is not None:
                # Before it gets the payload, so before it can fork anything.
                try:
                    cgroup.add(proc.pid)
                except OSError:
                    proc.kill()
                    proc.close()
                    raise
        return cls(proc, host_end, log_path), data_host

    def wait_ready(self, timeout: float) -> None:
        """Block until the zygote has loaded ``context``."""
        reply = self._recv(timeout, what="loading the payload")
        if reply.get("op") != "ready":
            raise ZygoteDied(f"unexpected first message from the zygote: {reply!r}")
        self.vm_size = int(reply.get("vm_size", 0))
        self.payload_bytes = int(reply.get("payload_bytes", 0))

    def request(self, msg: dict[str, Any], fds: tuple[int, ...] = (), timeout: float = 30.0) -> Any:
        """Send one command and return its reply; raises :class:`ZygoteDied` if it is gone."""
        with self.lock:
            data = json.dumps(msg).encode()
            try:
                if fds:
                    socket.send_fds(self.ctl, [data], list(fds))
                else:
                    self.ctl.send(data)
            except OSError as exc:
                raise ZygoteDied(f"the zygote process is gone ({exc})") from None
            reply = self._recv(timeout, what=str(msg.get("op")))
        if not reply.get("ok"):
            raise SandboxError(f"zygote refused {msg.get('op')!r}: {reply.get('error')}")
        return reply

    def _recv(self, timeout: float, what: str) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ZygoteDied(f"the zygote did not answer within {timeout:.0f} s ({what})")
            ready, _, _ = select.select([self.ctl], [], [], min(left, 0.5))
            if ready:
                break
            if self.proc.poll() is not None:
                raise ZygoteDied(self.death_reason())
        try:
            data = self.ctl.recv(_REPLY_MAX)
        except OSError:
            data = b""
        if not data:
            raise ZygoteDied(self.death_reason())
        return json.loads(data)

    def death_reason(self) -> str:
        """Describe why the zygote stopped, with the tail of its stderr."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(0.5)
        code = self.proc.returncode
        try:
            with open(self.log_path, "rb") as f:
                f.seek(max(0, os.fstat(f.fileno()).st_size - 2000))
                log = f.read().decode("utf-8", "replace").strip()
        except OSError:
            log = ""
        how = "is not responding" if code is None else _describe_status(code)
        return f"the sandbox zygote process {how}" + (f":\n{log}" if log else "")

    def alive(self) -> bool:
        """Whether the zygote process is still running."""
        return self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the zygote (safe against pid reuse); its workers are killed separately."""
        with contextlib.suppress(OSError):
            self.proc.kill()

    def close(self) -> None:
        """Ask the zygote to kill its workers and exit; kill it if it does not."""
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                self.ctl.send(b'{"op":"shutdown"}')
            try:
                self.proc.wait(0.5)
            except subprocess.TimeoutExpired:
                self.kill()
                self.proc.wait()
        closer = getattr(self.proc, "close", None)
        if closer is not None:
            closer()
        self.ctl.close()


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
