"""Issue 11 items 4 and 8: processes started by model code never outlive what the docs say.

A double-forked daemon (fork, ``setsid``, fork, parent exits) leaves the worker's process group
and its ancestry; these tests start one from model code and check it is gone when the block
times out, when the sandbox closes without a pids cgroup, and when the host is SIGKILLed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rlm_graph.sandbox import Sandbox, strict
from rlm_graph.sandbox.cgroup import MemoryCgroup, PidsCgroup

REPO = Path(__file__).resolve().parent.parent

# Starts a plain child and a double-forked daemon; prints their pids (as the sandbox sees them).
START_DAEMON = """
import os, subprocess, time
plain = subprocess.Popen(["sleep", "1000"])
r, w = os.pipe()
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.write(w, str(os.getpid()).encode())
        time.sleep(1000)
        os._exit(0)
    os._exit(0)
os.close(w)
daemon = int(os.read(r, 32))
os.wait()
print(plain.pid, daemon)
"""

# True while any of PIDS is a live process (zombies count as dead: only a wait is missing).
ANY_ALIVE = """
def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
print(any(_alive(p) for p in PIDS))
"""


def _no_cgroup(monkeypatch: pytest.MonkeyPatch) -> None:
    # Neither kind: killing a cgroup's processes at close would hide what the zygote does.
    monkeypatch.setattr(PidsCgroup, "create", classmethod(lambda cls, *a, **k: None))
    monkeypatch.setattr(MemoryCgroup, "create_memory", classmethod(lambda cls, *a, **k: None))


@pytest.fixture(
    params=[
        "process",
        "process-no-cgroup",
        pytest.param("strict", marks=pytest.mark.strict_sandbox),
    ]
)
def sandbox(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Sandbox]:
    mode = request.param
    if mode == "strict" and strict.userns_disabled_reason() is not None:
        pytest.skip("the kernel forbids user namespaces here")
    if mode == "process-no-cgroup":
        _no_cgroup(monkeypatch)
    box = Sandbox("x", mode="strict" if mode == "strict" else "process", exec_timeout=2)
    try:
        yield box
    finally:
        box.close()


def _gone_within(sb: Sandbox, pids: list[int], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while True:
        res = sb.run(f"PIDS = {pids!r}\n{ANY_ALIVE}")
        assert res.error is None, res.error
        if res.output.strip() == "False":
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)


def test_daemon_started_by_a_timed_out_block_is_killed(sandbox: Sandbox) -> None:
    res = sandbox.run(START_DAEMON + "time.sleep(100)\n")
    assert res.timed_out and not res.restarted, res.error
    assert "processes it started were killed" in (res.error or "")
    pids = [int(p) for p in res.output.split()]
    assert len(pids) == 2
    assert _gone_within(sandbox, pids, 5.0), "a process the timed-out block started survived"


def _host_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_daemon_dies_at_close_without_a_pids_cgroup(monkeypatch: pytest.MonkeyPatch) -> None:
    _no_cgroup(monkeypatch)
    sb = Sandbox("x")
    res = sb.run(START_DAEMON)
    assert res.error is None, res.error
    pids = [int(p) for p in res.output.split()]
    assert sb._res.cgroup is None and sb._res.memory is None
    sb.close()
    deadline = time.monotonic() + 5
    while any(_host_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_host_alive(p) for p in pids), "a daemon outlived Sandbox.close()"


HOST_SCRIPT = """
import json, sys, time
sys.path.insert(0, {repo!r})
from rlm_graph.sandbox import Sandbox
from rlm_graph.sandbox.cgroup import MemoryCgroup, PidsCgroup
if {no_cgroup!r}:
    PidsCgroup.create = classmethod(lambda cls, *a, **k: None)
    MemoryCgroup.create_memory = classmethod(lambda cls, *a, **k: None)
sb = Sandbox("x")
res = sb.run({code!r})
assert res.error is None, res.error
worker = sb._res.worker.pid
print(json.dumps({{"pids": [int(p) for p in res.output.split()] + [worker],
                  "scratch": sb._res.scratch}}), flush=True)
time.sleep(1000)
"""


@pytest.mark.parametrize("no_cgroup", [False, True], ids=["cgroup", "no-cgroup"])
def test_host_sigkill_leaves_no_processes_or_scratch(no_cgroup: bool) -> None:
    script = HOST_SCRIPT.format(repo=str(REPO), no_cgroup=no_cgroup, code=START_DAEMON)
    host = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        assert host.stdout is not None
        line = host.stdout.readline()
        assert line, "the host script failed"
        info = json.loads(line)
        pids = info["pids"]
        assert all(_host_alive(p) for p in pids)
        os.kill(host.pid, signal.SIGKILL)
        host.wait()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if not any(_host_alive(p) for p in pids) and not os.path.exists(info["scratch"]):
                break
            time.sleep(0.05)
        left = [p for p in pids if _host_alive(p)]
        assert not left, f"processes outlived the SIGKILLed host: {left}"
        assert not os.path.exists(info["scratch"]), "the scratch dir outlived the host"
    finally:
        if host.poll() is None:
            host.kill()
            host.wait()
        if host.stdout is not None:
            host.stdout.close()
        for pid in locals().get("pids", []):
            if _host_alive(pid):
                os.kill(pid, signal.SIGKILL)
