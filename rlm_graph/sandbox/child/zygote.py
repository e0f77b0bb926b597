"""Sandbox zygote and worker process setup (stdlib only; never imports ``rlm_graph``).

Started through ``entry.py`` (kept tiny: a script run by path is compiled on every start, a
module imported from it uses cached bytecode). The process the host starts is the *zygote*: it
receives ``context`` once over its payload socket and then, on request over its control socket,
forks fresh workers that inherit ``context`` copy-on-write. The zygote never runs model code; it
also carries out signal and kill requests, because in strict mode only it can see the workers'
pids.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import signal
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

import confine
import cpu
import frames
import repl
from tables import STR_KINDS

# Imported here so that every worker gets them for free, already initialised, copy-on-write.
PRELOAD = (
    "collections", "functools", "itertools", "math", "random", "re", "statistics", "string",
    "textwrap", "time", "datetime", "json", "heapq", "bisect", "operator", "dataclasses",
    "typing", "difflib", "csv", "io", "subprocess", "threading", "concurrent.futures",
    "unicodedata", "hashlib", "base64", "copy", "pprint", "decimal", "fractions",
)  # fmt: skip

PROTOCOL_FD = 3
CONTROL_MAX = 1 << 16


def receive_payload(sock: socket.socket) -> tuple[Any, int]:
    """Read ``context`` from the host's payload stream; returns it and its size in bytes."""
    header = frames.read_frame(sock, 1 << 16)
    if header is None:
        raise EOFError("the host sent no payload")
    kind = header["kind"]
    if kind in STR_KINDS:
        width, maxchar, codec = STR_KINDS[kind]
        chars, nbytes = int(header["chars"]), int(header["nbytes"])
        if chars == 0:
            return "", 0
        text, view = _empty_str(chars, width, maxchar)
        if text is None:
            buf = bytearray(nbytes)
            _recv_exact(sock, memoryview(buf))
            return buf.decode(codec, "surrogatepass"), nbytes
        _recv_exact(sock, view)
        return text, nbytes
    chunks = []
    while True:
        chunk = sock.recv(1 << 20)
        if not chunk:
            break
        chunks.append(chunk)
    data = b"".join(chunks)
    del chunks
    if kind == "utf8":
        return data.decode("utf-8", "replace"), len(data)
    return json.loads(data.decode("utf-8", "surrogatepass")), len(data)


def _empty_str(chars: int, width: int, maxchar: int) -> tuple[str | None, memoryview]:
    """A new, unshared ``str`` of ``chars`` characters and a writable view of its storage.

    The bytes are received straight into it (as C code filling ``PyUnicode_New`` would), so the
    payload is never held twice. Returns ``(None, ...)`` where that is not possible.
    """
    try:
        import ctypes

        new = ctypes.pythonapi.PyUnicode_New
        new.restype = ctypes.py_object
        new.argtypes = [ctypes.c_ssize_t, ctypes.c_uint32]
        text = new(chars, maxchar)
        header = sys.getsizeof(text) - (chars + 1) * width
        if type(text) is not str or len(text) != chars or header <= 0:
            return None, memoryview(b"")
        raw = (ctypes.c_char * (chars * width)).from_address(id(text) + header)
        return text, memoryview(raw).cast("B")
    except Exception:
        return None, memoryview(b"")


def _recv_exact(sock: socket.socket, view: memoryview) -> None:
    got = 0
    while got < len(view):
        n = sock.recv_into(view[got:])
        if n == 0:
            raise EOFError(f"payload stream ended after {got} of {len(view)} bytes")
        got += n


def _set_arena_max() -> None:
    # Each thread's malloc arena reserves 64 MiB of address space, which RLIMIT_AS counts.
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        libc.mallopt(-8, 2)  # M_ARENA_MAX
    except Exception:  # not glibc: the env variable is the fallback
        pass


def _become_subreaper() -> None:
    # Orphaned grandchildren get reparented to us, so we reap them and they leave no zombies.
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except Exception:  # best effort
        pass


def vm_size_bytes() -> int:
    """Current virtual memory size of this process."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


class ZygoteServer:
    """The zygote's own loop: holds ``context`` and forks workers on the host's request."""

    def __init__(self, args: Options) -> None:
        self.args = args
        self.ctl = socket.socket(fileno=args.ctl_fd)
        self.statuses: dict[int, int] = {}
        self.workers: set[int] = set()
        self.preloaded = False
        self.cpu = cpu.CpuBudgets()

    def reap(self) -> None:
        for pid, status in reap_children():
            if pid in self.workers:
                self.statuses[pid] = status

    def wait_worker(self, pid: int) -> int | None:
        while pid not in self.statuses:
            try:
                got, status = os.waitpid(pid, 0)
            except ChildProcessError:
                break
            self.statuses[got] = status
        self.workers.discard(pid)
        return self.statuses.pop(pid, None)

    def serve(self, context: Any, payload_bytes: int) -> None:
        signal.signal(signal.SIGCHLD, lambda *_: self.reap())
        self.send({"op": "ready", "vm_size": vm_size_bytes(), "payload_bytes": payload_bytes})
        serve_requests(
            self.ctl,
            lambda msg, fds: self.dispatch(str(msg.get("op")), msg, fds, context),
            on_eof=self.host_gone,
            after=self.preload_once,
            poll=self.enforce_cpu_budgets,
        )

    def enforce_cpu_budgets(self) -> None:
        for pid in self.cpu.overspent():
            self.killpg_unreaped(pid)

    def preload_once(self) -> None:
        if not self.preloaded:
            # After the first worker is running, not before: it keeps time-to-first-block
            # short, and every later worker still starts with these imports done.
            self.preloaded = True
            preload()

    def dispatch(
        self, op: str, msg: dict[str, Any], fds: list[int], context: Any
    ) -> dict[str, Any]:
        if op == "fork":
            return {"ok": True, "pid": self.fork(msg, fds, context)}
        if op == "cpu_budget":
            pid = int(msg["pid"])
            if pid in self.workers and pid not in self.statuses:
                self.cpu.set(pid, float(msg["seconds"]), str(msg.get("what", "block")))
            return {"ok": True}
        if op == "signal":
            pid = int(msg["pid"])
            if pid in self.workers and pid not in self.statuses:
                os.kill(pid, int(msg["sig"]))
            return {"ok": True}
        if op == "kill":
            pid = int(msg["pid"])
            if pid in self.workers:
                self.killpg_unreaped(pid)
                status = self.wait_worker(pid)
                self.cpu.forget(pid)
                reason = self.cpu.reason(pid)
                if msg.get("sweep", True):
                    # Descendants that left the group were reparented to us (the subreaper)
                    # when their parents died. Skipped when the host sweeps its cgroup itself.
                    kill_strays(keep=self.workers, reap=self.reap)
                return {"ok": True, "status": status, "reason": reason}
            return {"ok": True, "status": None}
        if op == "kill_others":
            pid = int(msg["pid"])
            alive = pid in self.workers and pid not in self.statuses
            killed = kill_started_by(pid) if alive else 0
            if alive:
                # Daemons that double-forked out of the worker's tree were reparented to us.
                kill_strays(keep=self.workers, reap=self.reap)
            return {"ok": True, "killed": killed}
        if op == "shutdown":
            self.shutdown()
        raise ValueError(f"unknown op {op!r}")

    def send(self, msg: dict[str, Any]) -> None:
        self.ctl.send(json.dumps(msg).encode())

    def killpg_unreaped(self, pid: int) -> None:
        """SIGKILL worker ``pid``'s process group, unless reaped (then its pid may be reused)."""
        if pid in self.statuses:
            return
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass

    def kill_everything(self) -> None:
        """SIGKILL every process below us: the workers' groups, then our children until none
        is left. As the subreaper we inherit every orphan of the tree, daemons included."""
        for pid in list(self.workers):
            self.killpg_unreaped(pid)
        kill_strays(keep=set(), reap=self.reap, seconds=2.0)

    def shutdown(self) -> None:
        """The host asked us to stop (it removes the scratch dir itself)."""
        self.kill_everything()
        os._exit(0)

    def host_gone(self) -> None:
        """The host closed our control socket without a shutdown: it died (say, SIGKILL).
        Nobody else will clean up, so we kill the tree and empty the scratch dir first."""
        self.kill_everything()
        import shutil

        os.chdir("/")
        shutil.rmtree(self.args.scratch, ignore_errors=True)
        os._exit(0)

    def fork(self, msg: dict[str, Any], fds: list[int], context: Any) -> int:
        if len(fds) != 2:
            raise ValueError("fork needs exactly two fds: protocol socket and output pipe")
        sys.stdout.flush()
        sys.stderr.flush()
        # Objects the collector tracks get their headers written when it runs; frozen, they
        # stay on pages shared with the zygote instead of being copied into every worker.
        gc.freeze()
        pid = os.fork()
        if pid:
            self.workers.add(pid)
            return pid
        try:
            self.become_worker(msg, fds, context)
        except BaseException:  # never return into the zygote loop
            import traceback

            traceback.print_exc()
        os._exit(71)

    def become_worker(self, msg: dict[str, Any], fds: list[int], context: Any) -> None:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        # Forget the control socket without closing it: closerange below closes the fd, and a
        # later close by the socket object could hit an unrelated fd that reused the number.
        self.ctl.detach()
        os.setsid()
        proto, out = fds
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(out, 1)
        os.dup2(out, 2)
        os.dup2(proto, PROTOCOL_FD)
        os.closerange(PROTOCOL_FD + 1, _max_fd())
        _set_limits(msg)
        _prefer_for_oom_kill()
        os.chdir(self.args.scratch)
        sys.stdout = _line_stream(1)
        sys.stderr = _line_stream(2)
        if self.args.strict:
            confine.apply(self.args.scratch)
        elif os.geteuid() == 0:
            # The host is non-dumpable; without this capability root cannot ptrace it either.
            confine.drop_ptrace_capability()
        sock = socket.socket(fileno=PROTOCOL_FD)
        worker = repl.Worker(sock, int(msg.get("max_frame_bytes", 1 << 28)))
        worker.install_api(context, str(msg.get("query", "")), list(msg.get("callbacks", [])))
        worker.serve()


def kill_started_by(worker: int) -> int:
    """SIGKILL what the live worker ``worker`` started: its process group and all descendants,
    also those that left the group with ``setsid``. Repeats until nothing is left (a forking
    process makes new ones); returns how many were killed."""
    killed = 0
    for _round in range(50):
        table = _proc_table()
        victims = _descendants(worker, table) | {
            pid for pid, (_ppid, pgrp) in table.items() if pgrp == worker
        }
        victims.discard(worker)
        if not victims:
            break
        if _round:
            time.sleep(0.002)
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except OSError:
                pass
    return killed


def kill_strays(keep: set[int], reap: Callable[[], None], seconds: float = 0.5) -> None:
    """SIGKILL our children other than ``keep``: orphans reparented to us, the subreaper.

    Repeats until none is left or ``seconds`` have passed: killing one hands us its children.
    """
    me = os.getpid()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        victims = [
            pid for pid, (ppid, _pgrp) in _proc_table().items() if ppid == me and pid not in keep
        ]
        if not victims:
            return
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.002)
        reap()


def _descendants(root: int, table: dict[int, tuple[int, int]]) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, (ppid, _pgrp) in table.items():
        children.setdefault(ppid, []).append(pid)
    found: set[int] = set()
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _proc_table() -> dict[int, tuple[int, int]]:
    """pid -> (ppid, process group) of every live (non-zombie) process we can see."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        # Zombies are already dead; only their parent's wait removes them.
        if len(fields) > 2 and fields[0] != b"Z":
            table[int(entry)] = (int(fields[1]), int(fields[2]))
    return table


def _max_fd() -> int:
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 1 << 16


def _line_stream(fd: int) -> Any:
    import io

    raw = io.FileIO(fd, "w", closefd=False)
    return io.TextIOWrapper(
        io.BufferedWriter(raw), encoding="utf-8", errors="backslashreplace", line_buffering=True
    )


def _prefer_for_oom_kill() -> None:
    # When the sandbox's memory cgroup is full, the kernel should kill a worker (variables
    # lost) rather than the zygote (payload reloaded). Raising one's own score needs no right.
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write("1000")
    except OSError:
        pass


def _set_limits(msg: dict[str, Any]) -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    mem = msg.get("address_space_bytes")
    if mem:
        limit = vm_size_bytes() + int(mem)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    nproc = msg.get("nproc")
    if nproc:
        try:
            resource.setrlimit(resource.RLIMIT_NPROC, (int(nproc), int(nproc)))
        except (ValueError, OSError):
            pass


def preload() -> None:
    """Import the common modules once, for every later worker to inherit."""
    for name in PRELOAD:
        try:
            __import__(name)
        except ImportError:
            pass


class Options:
    """Command line: ``--ctl-fd N --payload-fd N --scratch DIR [--strict] [--path DIR]...``.

    ``--path`` adds a directory to ``sys.path``: the host starts us with ``-S`` (no ``site``, whose
    ``.pth`` processing is slow) and names the site-packages directories itself.
    """

    def __init__(self, argv: list[str]) -> None:
        self.ctl_fd = -1
        self.payload_fd = -1
        self.scratch = ""
        self.strict = False
        self.template = False
        self.paths: list[str] = []
        args = iter(argv)
        for arg in args:
            if arg == "--strict":
                self.strict = True
            elif arg == "--template":
                self.template = True
            elif arg == "--ctl-fd":
                self.ctl_fd = int(next(args))
            elif arg == "--payload-fd":
                self.payload_fd = int(next(args))
            elif arg == "--scratch":
                self.scratch = next(args)
            elif arg == "--path":
                self.paths.append(next(args))
            else:
                raise SystemExit(f"entry.py: unknown argument {arg!r}")
        if self.ctl_fd < 0 or not (self.template or (self.payload_fd >= 0 and self.scratch)):
            raise SystemExit("entry.py: --ctl-fd, --payload-fd and --scratch are required")


def main(argv: list[str] | None = None) -> None:
    args = Options(sys.argv[1:] if argv is None else argv)
    sys.path.extend(p for p in args.paths if p not in sys.path)
    _set_arena_max()
    # Zygotes ignore interrupts; workers restore the default handler after fork.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if args.template:
        TemplateServer(args.ctl_fd).serve()
    else:
        run_zygote(args, preloaded=False)


def run_zygote(args: Options, *, preloaded: bool) -> None:
    """Receive ``context`` and serve the host's requests until shut down."""
    os.chdir(args.scratch)
    _become_subreaper()
    zygote = ZygoteServer(args)
    zygote.preloaded = preloaded
    with socket.socket(fileno=args.payload_fd) as payload_sock:
        context, size = receive_payload(payload_sock)
    zygote.serve(context, size)


class TemplateServer:
    """A warm process that forks new zygotes (process mode): no interpreter start per sandbox.

    It never holds a payload or runs model code. Request: ``{"op": "spawn", "scratch": DIR}`` with
    three fds (zygote control socket, payload socket, log file); reply: ``{"ok", "pid"}``. It exits
    when the host closes its control socket.
    """

    def __init__(self, ctl_fd: int) -> None:
        self.ctl = socket.socket(fileno=ctl_fd)

    def serve(self) -> None:
        preload()
        signal.signal(signal.SIGCHLD, lambda *_: reap_children())
        self.ctl.send(b'{"op":"ready"}')
        serve_requests(self.ctl, self.handle, on_eof=lambda: os._exit(0))

    def handle(self, msg: dict[str, Any], fds: list[int]) -> dict[str, Any]:
        if msg.get("op") != "spawn" or len(fds) != 3:
            raise ValueError("expected spawn with three fds")
        return {"ok": True, "pid": self.spawn(str(msg["scratch"]), fds)}

    def spawn(self, scratch: str, fds: list[int]) -> int:
        gc.freeze()  # see ZygoteServer.fork
        pid = os.fork()
        if pid:
            return pid
        try:
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            os.setsid()
            ctl, payload, log = fds
            os.dup2(log, 2)
            self.ctl.detach()
            keep = {0, 1, 2, ctl, payload}
            for fd in _open_fds():
                if fd not in keep:
                    try:
                        os.close(fd)
                    except OSError:
                        pass
            run_zygote(Options(["--ctl-fd", str(ctl), "--payload-fd", str(payload),
                                "--scratch", scratch]), preloaded=True)  # fmt: skip
        except BaseException:
            import traceback

            traceback.print_exc()
        os._exit(72)


def serve_requests(
    ctl: socket.socket,
    handle: Callable[[dict[str, Any], list[int]], dict[str, Any]],
    *,
    on_eof: Callable[[], None],
    after: Callable[[], None] | None = None,
    poll: Callable[[], None] | None = None,
) -> None:
    """Answer the host's requests (JSON, maybe with fds) on ``ctl`` until it hangs up.

    A request with ``"noreply": true`` gets no answer (the host did not wait for one).
    ``poll`` runs every ``cpu.POLL_SECONDS`` while no request comes.
    """
    while True:
        if poll is not None:
            poll()
            if not _readable(ctl, cpu.POLL_SECONDS):
                continue
        try:
            data, fds, _flags, _addr = socket.recv_fds(ctl, CONTROL_MAX, 4)
        except OSError:
            data, fds = b"", []
        if not data:
            on_eof()
            return
        msg: Any = {}
        try:
            msg = json.loads(data)
            reply = handle(msg, fds)
        except Exception as exc:  # report to the host, keep serving
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        finally:
            for fd in fds:
                try:
                    os.close(fd)
                except OSError:
                    pass
        if not (isinstance(msg, dict) and msg.get("noreply")):
            ctl.send(json.dumps(reply).encode())
        if after is not None:
            after()


def _readable(sock: socket.socket, timeout: float) -> bool:
    import select

    try:
        return bool(select.select([sock], [], [], timeout)[0])
    except InterruptedError:
        return False


def reap_children() -> list[tuple[int, int]]:
    """Reap every exited child; returns their ``(pid, wait status)``."""
    reaped: list[tuple[int, int]] = []
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return reaped
        if pid == 0:
            return reaped
        reaped.append((pid, status))


def _open_fds() -> list[int]:
    try:
        return [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        return list(range(3, 256))
