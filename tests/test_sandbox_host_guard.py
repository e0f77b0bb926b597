"""Issue 11 item 9: a process-mode worker cannot read the host's environment or memory, or take
its fds. Each test plays the hostile worker against the real host process (this one)."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator

import pytest

from rlm_graph.sandbox import Sandbox

ATTACK = """
import ctypes, errno, json, os
host = {host}
def attempt(fn):
    try:
        fn()
        return "ok"
    except OSError as exc:
        return errno.errorcode.get(exc.errno, exc.errno)
def read(path):
    with open(path, "rb"):  # opening is the access check; /proc/<pid>/mem at 0 is unmapped
        pass
def getfd():
    pidfd = os.pidfd_open(host)
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.syscall(438, pidfd, {fd}, 0)  # pidfd_getfd
    if fd < 0:
        raise OSError(ctypes.get_errno(), "pidfd_getfd")
    os.close(fd)
def peek():
    local = (ctypes.c_char * 8)()
    class IoVec(ctypes.Structure):
        _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]
    mine = IoVec(ctypes.cast(local, ctypes.c_void_p), 8)
    theirs = IoVec({address}, 8)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.process_vm_readv(host, ctypes.byref(mine), 1, ctypes.byref(theirs), 1, 0) < 0:
        raise OSError(ctypes.get_errno(), "process_vm_readv")
print(json.dumps({{
    "environ": attempt(lambda: read(f"/proc/{{host}}/environ")),
    "mem": attempt(lambda: read(f"/proc/{{host}}/mem")),
    "pidfd_getfd": attempt(getfd),
    "process_vm_readv": attempt(peek),
    "cap_sys_ptrace": int(
        [l for l in open("/proc/self/status") if l.startswith("CapEff")][0].split()[1], 16
    ) >> 19 & 1,
}}))
"""


@pytest.fixture
def sb() -> Iterator[Sandbox]:
    box = Sandbox("x")
    try:
        yield box
    finally:
        box.close()


def test_worker_cannot_read_host_memory_or_take_its_fds(sb: Sandbox) -> None:
    held = socket.socket(socket.AF_INET, socket.SOCK_STREAM)  # a host socket worth stealing
    secret = ctypes_buffer(b"host-secret-bytes")
    try:
        code = ATTACK.format(host=os.getpid(), fd=held.fileno(), address=secret[1])
        res = sb.run(code)
        assert res.error is None, res.error
        got = json.loads(res.output.strip().splitlines()[-1])
    finally:
        held.close()
    assert got["mem"] in ("EACCES", "EPERM"), got
    assert got["pidfd_getfd"] == "EPERM", got
    assert got["process_vm_readv"] == "EPERM", got
    assert got["cap_sys_ptrace"] == 0, got
    # Ordinary work in the worker is unaffected.
    assert sb.run("import os\nprint(len(os.listdir('/proc/self/fd')) > 0)").output == "True\n"


def ctypes_buffer(data: bytes) -> tuple[object, int]:
    import ctypes

    buf = ctypes.create_string_buffer(data)
    return buf, ctypes.addressof(buf)


# The host script: runs READ_ENVIRON (with its own pid filled in) in a sandbox, then checks that
# its own environment still works.
HOST = """
import ctypes, json, os, sys
sys.path.insert(0, REPO)
from rlm_graph.sandbox import Sandbox
with Sandbox("x") as sb:
    res = sb.run(CODE.replace("HOST_PID", str(os.getpid())))
libc = ctypes.CDLL(None)
libc.getenv.restype = ctypes.c_char_p
print(json.dumps({"worker": res.output, "error": res.error,
                  "os_environ": os.environ.get("RLM_TEST_SECRET"),
                  "getenv": (libc.getenv(b"RLM_TEST_SECRET") or b"").decode()}))
"""

READ_ENVIRON = """
try:
    with open("/proc/HOST_PID/environ", "rb") as f:
        data = f.read()
    print("secret seen" if b"gsk_environ_secret" in data else f"read {len(data)} bytes, no secret")
except OSError as exc:
    print("refused", exc.errno)
"""


def test_worker_cannot_read_the_host_initial_environment() -> None:
    import subprocess
    import sys
    from pathlib import Path

    repo = str(Path(__file__).resolve().parent.parent)
    script = f"REPO = {repo!r}\nCODE = {READ_ENVIRON!r}\n{HOST}"
    env = {**os.environ, "RLM_TEST_SECRET": "gsk_environ_secret"}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["error"] is None, got
    assert got["worker"] and "secret seen" not in got["worker"], got
    assert got["os_environ"] == "gsk_environ_secret", got
    assert got["getenv"] == "gsk_environ_secret", got
