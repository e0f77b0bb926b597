"""A per-host-process template that forks new zygotes (process mode only).

Starting a zygote means starting an interpreter and importing the worker's modules: tens of ms
of CPU per sandbox, paid again by every child RLM. The template pays it once; each new zygote is
then one ``fork``. Strict mode cannot use it (each strict zygote needs its own bubblewrap). Any
failure falls back to starting the zygote directly.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import select
import signal
import socket
import subprocess
import sys
import threading

from .control import ENTRY_SCRIPT, ControlClient, ZygoteDied
from .errors import SandboxError

_READY_TIMEOUT = 30.0


class ForkedProcess:
    """A zygote forked by the template: not our child, so tracked through a pidfd."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.pidfd = os.pidfd_open(pid)
        self.returncode: int | None = None

    def poll(self) -> int | None:
        """``None`` while running; the template reaps it, so the exit code is unknown (``0``)."""
        if self.returncode is None and self._exited(0):
            self.returncode = 0
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Wait until it exits (``subprocess.TimeoutExpired`` after ``timeout``)."""
        if self.returncode is None:
            if not self._exited(timeout):
                raise subprocess.TimeoutExpired(str(self.pid), timeout or 0)
            self.returncode = 0
        return self.returncode

    def kill(self) -> None:
        """SIGKILL it, safely even if its pid was reused."""
        with contextlib.suppress(OSError):
            signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)

    def close(self) -> None:
        """Release the pidfd."""
        with contextlib.suppress(OSError):
            os.close(self.pidfd)

    def _exited(self, timeout: float | None) -> bool:
        try:
            ready, _, _ = select.select([self.pidfd], [], [], timeout)
        except (OSError, ValueError):
            return True
        return bool(ready)


class TemplateHandle:
    """The host's handle on the running template process and its control socket."""

    def __init__(self, paths: list[str]) -> None:
        host_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        argv = [sys.executable, "-I", "-S", "-X", "utf8", ENTRY_SCRIPT, "--template",
                "--ctl-fd", str(child_end.fileno())]  # fmt: skip
        for path in paths:
            argv += ["--path", path]
        try:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env={"MALLOC_ARENA_MAX": "2"},
                cwd="/",
                pass_fds=(child_end.fileno(),),
                start_new_session=True,
            )
        except BaseException:
            host_end.close()
            raise
        finally:
            child_end.close()
        self.ctl = host_end
        self.owner = os.getpid()
        self.control = ControlClient(
            host_end,
            name="sandbox template",
            exited=lambda: self.proc.poll() is not None,
            describe_death=lambda: "the sandbox template process did not answer",
        )
        try:
            ready = self.control.receive(_READY_TIMEOUT, what="starting").get("op") == "ready"
        except ZygoteDied:
            ready = False
        if not ready:
            self.close()
            raise ZygoteDied("the sandbox template process did not start")

    def spawn(self, scratch: str, fds: tuple[int, int, int]) -> ForkedProcess:
        """Fork a zygote with these fds (control socket, payload socket, log file)."""
        reply = self.control.request({"op": "spawn", "scratch": scratch}, fds, _READY_TIMEOUT)
        return ForkedProcess(int(reply["pid"]))

    def alive(self) -> bool:
        """Whether the template process is running."""
        return self.proc.poll() is None

    def close(self) -> None:
        """Stop the template (zygotes it forked live on, owned by their sandboxes)."""
        with contextlib.suppress(OSError):
            self.ctl.close()
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


_lock = threading.Lock()
_template: TemplateHandle | None = None


def spawn_zygote(paths: list[str], scratch: str, fds: tuple[int, int, int]) -> ForkedProcess:
    """Fork a zygote from the shared template, starting the template if needed."""
    global _template
    with _lock:
        template = _template
        if template is not None and (template.owner != os.getpid() or not template.alive()):
            # Inherited through os.fork() of the host, or dead: start our own.
            if template.owner == os.getpid():
                template.close()
            template = _template = None
        if template is None:
            template = _template = TemplateHandle(paths)
    try:
        return template.spawn(scratch, fds)
    except SandboxError:
        with _lock:
            if _template is template:
                _template = None
        template.close()
        raise


def shutdown_template() -> None:
    """Stop the shared template process (it is restarted on demand; also done at exit)."""
    global _template
    with _lock:
        template, _template = _template, None
    if template is not None and template.owner == os.getpid():
        template.close()


atexit.register(shutdown_template)
