"""Sandbox lifecycle: nothing is left behind (processes, zombies, fds, scratch dirs, cgroups)."""

from __future__ import annotations

import asyncio
import gc
import os
import threading
import time
from pathlib import Path

import pytest

from rlm_graph.sandbox import Sandbox, SandboxError
from rlm_graph.sandbox.template import shutdown_template
from tests.jobs import child_pids


@pytest.fixture(autouse=True)
def warm_template() -> None:
    """Start the shared zygote template first: it is meant to outlive single sandboxes."""
    with Sandbox() as sb:
        sb.start()


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def cgroups() -> set[str]:
    root = "/sys/fs/cgroup/pids"
    prefix = f"rlm-graph-{os.getpid()}-"
    if not os.path.isdir(root):
        return set()
    return {d for d in os.listdir(root) if d.startswith(prefix)}


def wait_until(predicate: object, timeout: float = 5.0) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.01)


Snapshot = tuple[list[int], set[str], set[str]]


def snapshot() -> Snapshot:
    return sorted(child_pids()), open_fds(), cgroups()


def assert_nothing_left(before: Snapshot, *scratch_dirs: str | None) -> None:
    wait_until(lambda: sorted(child_pids()) == before[0])
    after = snapshot()
    assert after[0] == before[0], "child processes (or zombies) left behind"
    assert after[1] == before[1], "file descriptors leaked"
    assert after[2] == before[2], "cgroup left behind"
    for path in scratch_dirs:
        assert path is not None and not os.path.exists(path), "scratch dir left behind"


def test_close_removes_everything_after_hostile_blocks() -> None:
    before = snapshot()
    sb = Sandbox("ctx", exec_timeout=0.5, handlers={"llm_query": lambda p: p})
    sb.run("import subprocess\nsubprocess.Popen(['sleep', '100'])")
    sb.run("import os\nos._exit(3)")
    sb.run("sum(range(10**12))")
    sb.run("print(llm_query('x'))")
    scratch = sb._res.scratch
    assert scratch is not None and os.path.isdir(scratch)
    # The zygote was forked by the shared template: no new child of ours.
    assert len(child_pids()) == len(before[0])
    sb.close()
    sb.close()  # idempotent
    assert_nothing_left(before, scratch)


def test_context_manager_closes_on_exception() -> None:
    before = snapshot()
    with pytest.raises(RuntimeError, match="boom"):
        with Sandbox("ctx") as sb:
            sb.run("x = 1")
            scratch = sb._res.scratch
            raise RuntimeError("boom")
    assert sb.closed
    assert_nothing_left(before, scratch)


def test_garbage_collected_sandbox_cleans_up() -> None:
    before = snapshot()
    sb = Sandbox("ctx")
    sb.run("x = 1")
    scratch = sb._res.scratch
    del sb
    gc.collect()
    assert_nothing_left(before, scratch)


def test_never_started_sandbox_leaves_nothing() -> None:
    before = snapshot()
    Sandbox("ctx").close()
    with Sandbox([1, 2]):
        pass
    assert_nothing_left(before)


def test_close_from_another_thread_stops_a_running_block() -> None:
    before = snapshot()
    sb = Sandbox(exec_timeout=60)
    sb.start()
    scratch = sb._res.scratch
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(sb.run("while True: pass"))
        except SandboxError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    time.sleep(0.2)
    sb.close()
    thread.join(10)
    assert not thread.is_alive()
    assert outcome, "run() did not return"
    assert_nothing_left(before, scratch)


async def test_async_usage() -> None:
    before = snapshot()
    async with Sandbox("async ctx", handlers={"llm_query": lambda p: p[::-1]}) as sb:
        first, second = await asyncio.gather(
            sb.arun("a = llm_query('abc')"), sb.arun("b = len(context)")
        )
        assert first.error is None and second.error is None
        result = await sb.arun("print(a, b)")
        assert result.output == "cba 9\n"
        scratch = sb._res.scratch
    assert_nothing_left(before, scratch)


async def test_cancelled_arun_stops_the_block() -> None:
    before = snapshot()
    async with Sandbox(exec_timeout=60) as sb:
        await sb.arun("x = 1")
        task = asyncio.ensure_future(sb.arun("while True: pass"))
        await asyncio.sleep(0.3)
        task.cancel()
        started = time.monotonic()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert time.monotonic() - started < 5
        result = await sb.arun("print(globals().get('x'))")
        assert result.output == "None\n" and result.restarted
        scratch = sb._res.scratch
    assert_nothing_left(before, scratch)


def test_sandboxes_are_independent() -> None:
    with Sandbox("one") as a, Sandbox("two") as b:
        a.run("v = 'a'")
        b.run("v = 'b'")
        assert a.run("print(v, context)").output == "a one\n"
        assert b.run("print(v, context)").output == "b two\n"


def test_pids_cgroup_caps_processes() -> None:
    with Sandbox(max_processes=16) as sb:
        sb.start()
        if sb._res.cgroup is None:
            pytest.skip("no writable pids cgroup here (RLIMIT_NPROC covers non-root users only)")
        with open(os.path.join(sb._res.cgroup.path, "pids.max")) as f:
            assert int(f.read()) == 20
        result = sb.run(
            "import subprocess\nprocs = []\n"
            "try:\n    for _ in range(40):\n"
            "        procs.append(subprocess.Popen(['sleep', '30']))\n"
            "except OSError as e:\n    print('refused', len(procs))\n"
            "for p in procs: p.kill(); p.wait()"
        )
        assert result.output.startswith("refused"), result
        assert int(result.output.split()[1]) < 20


async def test_many_concurrent_aruns_do_not_exhaust_a_thread_pool() -> None:
    # Each block waits inside a callback until all 12 are in flight; a shared executor of a
    # few threads (asyncio's default on 2 CPUs is 6) would deadlock here.
    n = 12
    barrier = threading.Barrier(n, timeout=20)

    def llm(prompt: str) -> str:
        barrier.wait()
        return prompt

    boxes = [Sandbox(handlers={"llm_query": llm}, exec_timeout=30) for _ in range(n)]
    try:
        results = await asyncio.gather(
            *(box.arun(f"print(llm_query('{i}'))") for i, box in enumerate(boxes))
        )
    finally:
        await asyncio.gather(*(box.__aexit__(None, None, None) for box in boxes))
    assert [r.output for r in results] == [f"{i}\n" for i in range(n)]


def test_stale_cgroups_of_dead_hosts_are_removed() -> None:
    root = "/sys/fs/cgroup/pids"
    if not os.access(root, os.W_OK):
        pytest.skip("no writable pids cgroup here")
    stale = os.path.join(root, "rlm-graph-999999999-deadbeef0000")  # above any pid_max
    os.mkdir(stale)
    try:
        with Sandbox() as sb:
            sb.start()
        assert not os.path.exists(stale)
    finally:
        if os.path.exists(stale):
            os.rmdir(stale)


def test_template_shutdown_leaves_nothing() -> None:
    shutdown_template()
    before = snapshot()
    with Sandbox("a") as sb:
        assert sb.run("print(context)").output == "a\n"
        scratch = sb._res.scratch
    assert len(child_pids()) == len(before[0]) + 1  # the template
    shutdown_template()
    assert_nothing_left(before, scratch)


def test_without_template_the_zygote_is_our_child() -> None:
    before = snapshot()
    sb = Sandbox("direct")
    sb.fork_from_template = False
    with sb:
        assert sb.run("print(context)").output == "direct\n"
        assert len(child_pids()) == len(before[0]) + 1
        scratch = sb._res.scratch
    assert_nothing_left(before, scratch)


def test_dead_template_is_replaced() -> None:
    from rlm_graph.sandbox import template

    current = template._template
    assert current is not None
    current.proc.kill()
    current.proc.wait()
    with Sandbox("again") as sb:
        assert sb.run("print(context)").output == "again\n"
    assert template._template is not None and template._template is not current


NON_ROOT_SCRIPT = """
import os, sys
sys.path.insert(0, {root!r})
from rlm_graph.sandbox import Sandbox
with Sandbox("x", exec_timeout=5, max_processes=20) as sb:
    assert sb.run("1").error is None
    assert sb._res.cgroup is None, "nobody cannot create cgroups"
    code = (
        "import os, time\\nn = 0\\ntry:\\n    while n < 200:\\n"
        "        if os.fork() == 0:\\n            time.sleep(30)\\n            os._exit(0)\\n"
        "        n += 1\\nexcept OSError as e:\\n    print('refused after', n, e.errno)"
    )
    print(sb.run(code).output, end="")
    print(sb.run("print('alive')").output, end="")
"""


def test_process_cap_for_non_root_users_uses_rlimit_nproc() -> None:
    import shutil
    import subprocess

    # The sandbox is stdlib only, so the system interpreter can run it as user nobody (the venv's
    # interpreter may live under a directory nobody cannot enter).
    python = shutil.which("python3", path="/usr/bin:/bin")
    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or setpriv is None or python is None:
        pytest.skip("needs root, setpriv and a system python3 to run a sandbox as nobody")
    version = subprocess.run(
        [python, "-c", "import sys; print(sys.version_info >= (3, 10))"],
        capture_output=True,
        text=True,
    )
    if version.stdout.strip() != "True":
        pytest.skip("the system python3 is older than 3.10")
    # A copy of the package in a world-readable place: the checkout may sit under a directory
    # that nobody cannot enter (e.g. a mode-700 `mktemp -d`).
    import tempfile

    repo = Path(__file__).resolve().parent.parent
    root = tempfile.mkdtemp(prefix="rlm-nonroot-")
    os.chmod(root, 0o755)
    shutil.copytree(
        repo / "rlm_graph" / "sandbox",
        Path(root) / "rlm_graph" / "sandbox",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    shutil.copy(repo / "rlm_graph" / "__init__.py", Path(root) / "rlm_graph" / "__init__.py")
    for d in (Path(root) / "rlm_graph", Path(root) / "rlm_graph" / "sandbox"):
        d.chmod(0o755)
    try:
        done = subprocess.run(
            [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", python, "-c",
             NON_ROOT_SCRIPT.format(root=root)],
            capture_output=True, text=True, timeout=60, cwd="/",
        )  # fmt: skip
    finally:
        shutil.rmtree(root, ignore_errors=True)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("refused after "), done.stdout
    assert int(lines[0].split()[2]) < 20
    assert lines[0].endswith(" 11")  # EAGAIN
    assert lines[1] == "alive"


def test_scratch_dirs_of_dead_hosts_are_removed() -> None:
    import tempfile

    stale = os.path.join(tempfile.gettempdir(), "rlm-sandbox-999999999-leftover")  # no such pid
    os.makedirs(os.path.join(stale, "sub"), exist_ok=True)
    with Sandbox() as sb:
        sb.start()
        assert sb._res.scratch is not None
        assert os.path.basename(sb._res.scratch).startswith(f"rlm-sandbox-{os.getpid()}-")
    assert not os.path.exists(stale)
