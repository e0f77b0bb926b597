"""One llama.cpp server per process, started lazily, stopped at exit.

The server runs in a child process (``python -m rlm_graph.local.server_main``) in its own
process group, so it can be killed as a whole and a Ctrl-C in the terminal reaches only the
host, whose ``atexit`` hook then stops it. If the host dies without running ``atexit``
(SIGKILL), the child notices its parent is gone within half a second and exits.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from rlm_graph import _exit

__all__ = [
    "LocalServer",
    "LocalServerError",
    "LocalSettings",
    "get_server",
    "server_pids",
    "shutdown_server",
]


class LocalServerError(RuntimeError):
    """The local llama.cpp server could not be started or stopped."""


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise LocalServerError(f"{name} must be an integer, got {raw!r}") from None
    if value <= 0:
        raise LocalServerError(f"{name} must be positive, got {value}")
    return value


def _env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise LocalServerError(f"{name} must be 1 or 0 (true/false), got {raw!r}")


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise LocalServerError(f"{name} must be a number, got {raw!r}") from None


@dataclass(frozen=True)
class LocalSettings:
    """Settings of the local server and client; each has an environment variable.

    Defaults suit a 2-core machine: 8192 tokens of context (the compact root prompt plus a few
    observations fit), 2 threads, 256 output tokens per call (a Thought and a short code block fit).
    """

    ctx: int = 8192
    """Context window in tokens (``RLM_LOCAL_CTX``)."""
    threads: int = 2
    """CPU threads for generation and prompt processing (``RLM_LOCAL_THREADS``)."""
    max_tokens: int = 256
    """Output-token cap per call, enforced by the server (``RLM_LOCAL_MAX_TOKENS``)."""
    parallel: int = 1
    """Concurrent sequences the server decodes; each gets ctx/parallel (``RLM_LOCAL_PARALLEL``)."""
    timeout: float = 300.0
    """Per-request HTTP timeout in seconds; generous for rare stalls (``RLM_LOCAL_TIMEOUT``)."""
    start_timeout: float = 180.0
    """Seconds to wait for the model to load (``RLM_LOCAL_START_TIMEOUT``)."""
    cache_prompt: bool = True
    """Reuse the server's cache of the previous prompt's tokens (``RLM_LOCAL_CACHE_PROMPT``):
    about half the time per call, since each iteration's prompt extends the previous one.
    Temperature-0 output then depends on the previous request too: the same sequence of calls
    gives the same replies, but concurrent calls arriving in another order may not."""

    @classmethod
    def from_env(cls) -> LocalSettings:
        """Settings from ``RLM_LOCAL_*`` environment variables, defaults otherwise."""
        d = cls()
        return cls(
            ctx=_env_int("RLM_LOCAL_CTX", d.ctx),
            threads=_env_int("RLM_LOCAL_THREADS", d.threads),
            max_tokens=_env_int("RLM_LOCAL_MAX_TOKENS", d.max_tokens),
            parallel=_env_int("RLM_LOCAL_PARALLEL", d.parallel),
            timeout=_env_float("RLM_LOCAL_TIMEOUT", d.timeout),
            start_timeout=_env_float("RLM_LOCAL_START_TIMEOUT", d.start_timeout),
            cache_prompt=_env_bool("RLM_LOCAL_CACHE_PROMPT", d.cache_prompt),
        )


def _tail(path: Path, lines: int = 15) -> str:
    try:
        with open(path, errors="replace") as f:
            return "".join(deque(f, maxlen=lines)).rstrip()
    except OSError:
        return "(no log)"


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=2.0) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


@dataclass
class LocalServer:
    """A llama.cpp server child process serving one GGUF file on 127.0.0.1."""

    model_path: Path
    settings: LocalSettings = field(default_factory=LocalSettings)
    url: str | None = None
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    workdir: Path | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def pid(self) -> int | None:
        """Process id of the server, or ``None`` when not running."""
        return self.proc.pid if self.proc is not None else None

    def running(self) -> bool:
        """Whether the child process is alive."""
        return self.proc is not None and self.proc.poll() is None

    def ensure_started(self) -> str:
        """Start the server if needed (thread-safe) and return its base URL (no ``/v1``)."""
        with self._lock:
            if self.url is not None and self.running():
                return self.url
            if _closing.is_set():
                # A thread still running after Ctrl-C or at exit must not start a new server.
                raise LocalServerError("the local model server was stopped: the program is ending")
            self._stop_locked()
            self._start_locked()
            assert self.url is not None
            return self.url

    def _start_locked(self) -> None:
        if not self.model_path.is_file():
            raise LocalServerError(f"model file not found: {self.model_path}")
        self.workdir = workdir = Path(tempfile.mkdtemp(prefix="rlm-graph-llama-"))
        port_file = workdir / "address"
        self.log_path = workdir / "server.log"
        s = self.settings
        cmd = [
            sys.executable,
            "-m",
            "rlm_graph.local.server_main",
            "--model",
            str(self.model_path),
            "--port-file",
            str(port_file),
            "--ctx",
            str(s.ctx),
            "--threads",
            str(s.threads),
            "--parallel",
            str(s.parallel),
            "--parent-pid",
            str(os.getpid()),
        ]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + s.start_timeout
        url: str | None = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self.proc = None
                raise LocalServerError(
                    f"local model server exited with code {code} before it was ready; last "
                    f"lines of {self.log_path}:\n{_tail(self.log_path)}"
                )
            if url is None and port_file.exists():
                url = port_file.read_text().strip().rstrip("/")
            if url is not None and _healthy(url):
                self.url = url
                return
            time.sleep(0.2)
        self.workdir = None  # keep the log the error points at
        self._stop_locked()
        raise LocalServerError(
            f"local model server not ready after {s.start_timeout:.0f} s; last lines of "
            f"{self.log_path}:\n{_tail(self.log_path)}"
        )

    def stop(self) -> None:
        """Stop the server (idempotent): SIGTERM to its process group, then SIGKILL."""
        with self._lock:
            self._stop_locked()

    def _stop_locked(self) -> None:
        proc, self.proc, self.url = self.proc, None, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5.0)
        # Only a server that ran cleanly loses its log; a failed start keeps it for the user.
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None


_servers: dict[tuple[str, LocalSettings], LocalServer] = {}
_servers_lock = threading.Lock()
_closing = threading.Event()


def get_server(model_path: Path, settings: LocalSettings | None = None) -> LocalServer:
    """The process-wide server for this file and settings (not started until used)."""
    settings = settings or LocalSettings.from_env()
    key = (str(Path(model_path).resolve()), settings)
    with _servers_lock:
        server = _servers.get(key)
        if server is None:
            server = _servers[key] = LocalServer(Path(model_path), settings)
        return server


def server_pids() -> list[int]:
    """Process ids of the local servers this process is running (for tests and diagnostics)."""
    with _servers_lock:
        servers = list(_servers.values())
    return [pid for s in servers if s.running() and (pid := s.pid) is not None]


def shutdown_server() -> None:
    """Stop every local server this process started (also runs at exit)."""
    with _servers_lock:
        servers = list(_servers.values())
    for server in servers:
        server.stop()


def _close_for_good() -> None:
    _closing.set()
    shutdown_server()


atexit.register(_close_for_good)
# On Ctrl-C in the CLI: a node blocked in a request to the server fails at once instead of
# holding the exit until the model has finished generating.
_exit.on_abandon(_close_for_good)
