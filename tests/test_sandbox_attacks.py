"""Issue 11, strict mode: attacks by sandboxed code on host files, the zygote and the host's
sockets. Each test plays the hostile worker; each failed on main at 89181b9."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rlm_graph.sandbox import ExecResult, Sandbox, strict

pytestmark = pytest.mark.strict_sandbox

SECRET = "GROQ_API_KEY=gsk_host_secret_that_must_not_leak\n"


@pytest.fixture
def strict_sb() -> Iterator[Sandbox]:
    reason = strict.userns_disabled_reason()
    if reason is not None:
        pytest.skip(f"the kernel forbids user namespaces here: {reason}")
    box = Sandbox("payload", mode="strict", exec_timeout=10)
    try:
        yield box
    finally:
        box.close()


def _run_bounded(sb: Sandbox, code: str, seconds: float = 30.0) -> ExecResult | None:
    """``sb.run(code)`` on a thread; ``None`` if it has not returned after ``seconds``."""
    got: list[ExecResult] = []
    thread = threading.Thread(target=lambda: got.append(sb.run(code)), daemon=True)
    thread.start()
    thread.join(seconds)
    return got[0] if got else None


def _plant(sb: Sandbox, how: str) -> None:
    """Sandboxed code replaces every file in its scratch dir (the host's zygote log was one)
    with a symlink to ``how`` (a host path), or with a FIFO when ``how`` is ``"fifo"``."""
    code = (
        "import os\n"
        "names = [n for n in os.listdir('.') if n.startswith('.')] + ['.zygote.log']\n"
        "for name in set(names):\n"
        "    if os.path.isdir(name) and not os.path.islink(name):\n"
        "        continue\n"
        "    if os.path.lexists(name):\n"
        "        os.remove(name)\n"
        f"    if {how!r} == 'fifo':\n"
        "        os.mkfifo(name)\n"
        "    else:\n"
        f"        os.symlink({how!r}, name)\n"
        "print(sorted(names))\n"
    )
    res = sb.run(code)
    assert res.error is None, res.error


def test_symlink_in_scratch_cannot_read_or_truncate_a_host_file(
    strict_sb: Sandbox, tmp_path: Path
) -> None:
    secret = tmp_path / ".env"
    secret.write_text(SECRET)
    _plant(strict_sb, str(secret))
    assert strict_sb._res.zygote is not None
    strict_sb._res.zygote.kill()  # however the zygote dies: see the prlimit test for one way
    strict_sb._res.zygote.proc.wait(10)
    res = _run_bounded(strict_sb, "print('after')")
    assert res is not None, "run() blocked after the zygote died"
    assert "gsk_host_secret" not in (res.error or "") + res.output
    assert res.restarted and res.output == "after\n"
    assert secret.read_text() == SECRET, "the host file was truncated or changed"


def test_fifo_in_scratch_does_not_block_run_or_close(strict_sb: Sandbox) -> None:
    _plant(strict_sb, "fifo")
    assert strict_sb._res.zygote is not None
    strict_sb._res.zygote.kill()
    strict_sb._res.zygote.proc.wait(10)
    res = _run_bounded(strict_sb, "print('after')")
    assert res is not None, "run() blocked on a FIFO the sandbox put in scratch"
    assert res.output == "after\n"
    closer = threading.Thread(target=strict_sb.close, daemon=True)
    closer.start()
    closer.join(30)
    assert not closer.is_alive(), "close() blocked on a FIFO the sandbox put in scratch"


OTHER_PID_CALLS = """
import ctypes, errno, json, os, resource
libc = ctypes.CDLL(None, use_errno=True)
zygote = os.getppid()
def attempt(fn):
    try:
        fn()
        return "ok"
    except OSError as exc:
        return errno.errorcode.get(exc.errno, exc.errno)
def raw(number, *args):
    def call():
        if libc.syscall(number, *[ctypes.c_long(a) for a in args]) != 0:
            raise OSError(ctypes.get_errno(), "")
    return call
out = {
    "prlimit": attempt(lambda: resource.prlimit(zygote, resource.RLIMIT_CPU, (0, 0))),
    "setpriority": attempt(lambda: os.setpriority(os.PRIO_PROCESS, zygote, 19)),
    "setpriority_user": attempt(lambda: os.setpriority(os.PRIO_USER, 0, 19)),
    "sched_setaffinity": attempt(lambda: os.sched_setaffinity(zygote, {0})),
    "sched_setscheduler": attempt(
        lambda: os.sched_setscheduler(zygote, os.SCHED_IDLE, os.sched_param(0))),
    "sched_setparam": attempt(lambda: os.sched_setparam(zygote, os.sched_param(0))),
    "zygote_cpu_limit": list(resource.prlimit(zygote, resource.RLIMIT_CPU)),
    "own_prlimit": attempt(lambda: resource.prlimit(0, resource.RLIMIT_CORE, (0, 0))),
    "own_setrlimit": attempt(lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (512, 512))),
    "own_nice": attempt(lambda: os.setpriority(os.PRIO_PROCESS, 0, 1)),
    "own_affinity": attempt(lambda: os.sched_setaffinity(0, os.sched_getaffinity(0))),
}
if os.uname().machine == "x86_64":
    out["ioprio_set"] = attempt(raw(251, 1, zygote, (3 << 13) | 7))  # IDLE class, other pid
    attr = (ctypes.c_uint32 * 14)(56)  # struct sched_attr {size=56, policy=0 ...}
    def sched_setattr():
        if libc.syscall(314, zygote, ctypes.byref(attr), 0) != 0:
            raise OSError(ctypes.get_errno(), "")
    out["sched_setattr"] = attempt(sched_setattr)
print(json.dumps(out))
"""


OTHER_PID_NAMES = (
    "prlimit", "setpriority", "setpriority_user", "sched_setaffinity", "sched_setscheduler",
    "sched_setparam", "ioprio_set", "sched_setattr",
)  # fmt: skip


def test_worker_cannot_change_limits_or_scheduling_of_the_zygote(strict_sb: Sandbox) -> None:
    import json

    res = strict_sb.run(OTHER_PID_CALLS)
    assert res.error is None, res.error
    got = json.loads(res.output.strip().splitlines()[-1])
    for name in OTHER_PID_NAMES:
        if name in got:
            assert got[name] == "EPERM", (name, got)
    assert got["zygote_cpu_limit"] == [resource_infinity()] * 2, got
    for name in ("own_prlimit", "own_setrlimit", "own_nice", "own_affinity"):
        assert got[name] == "ok", (name, got)
    time.sleep(1.5)
    assert strict_sb._res.zygote is not None and strict_sb._res.zygote.alive()
    assert strict_sb.run("print(2)").restarted is False


def resource_infinity() -> int:
    import resource

    return resource.RLIM_INFINITY


SOCKET_FAMILIES = """
import errno, json, socket
def attempt(family, kind):
    try:
        socket.socket(family, kind).close()
        return "ok"
    except OSError as exc:
        return errno.errorcode.get(exc.errno, exc.errno)
out = {
    "vsock": attempt(40, socket.SOCK_STREAM),
    "vsock_dgram": attempt(40, socket.SOCK_DGRAM),
    "packet": attempt(17, socket.SOCK_RAW),
    "xdp": attempt(44, socket.SOCK_RAW),
    "alg": attempt(38, socket.SOCK_SEQPACKET),
    "unix": attempt(socket.AF_UNIX, socket.SOCK_STREAM),
    "inet": attempt(socket.AF_INET, socket.SOCK_DGRAM),
    "inet6": attempt(socket.AF_INET6, socket.SOCK_STREAM),
    "netlink": attempt(socket.AF_NETLINK, socket.SOCK_RAW),
}
try:
    a, b = socket.socketpair()
    a.close(); b.close()
    out["socketpair"] = "ok"
except OSError as exc:
    out["socketpair"] = errno.errorcode.get(exc.errno, exc.errno)
print(json.dumps(out))
"""


def test_only_unix_inet_inet6_and_netlink_sockets_can_be_made(strict_sb: Sandbox) -> None:
    import json

    res = strict_sb.run(SOCKET_FAMILIES)
    assert res.error is None, res.error
    got = json.loads(res.output.strip().splitlines()[-1])
    for name in ("vsock", "vsock_dgram", "packet", "xdp", "alg"):
        assert got[name] == "EAFNOSUPPORT", (name, got)
    for name in ("unix", "inet", "inet6", "netlink", "socketpair"):
        assert got[name] == "ok", (name, got)


def test_scratch_holds_no_host_files(strict_sb: Sandbox) -> None:
    # Whatever the host keeps for itself (logs) lives outside anything the sandbox can write.
    res = strict_sb.run("import os\nprint(sorted(os.listdir('.')))")
    assert res.output == "[]\n", res.output
    assert strict_sb._res.scratch is not None
    assert os.listdir(strict_sb._res.scratch) == []
