"""Strict sandbox mode: every denial end to end, plus the bubblewrap and self-confinement layers.

These tests run real processes under bubblewrap. They skip only when the kernel forbids user
namespaces (the reason names the sysctl); a missing ``bwrap`` is a failure, not a skip.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rlm_graph.sandbox import Sandbox, SandboxError, strict
from tests.test_sandbox_lifecycle import assert_nothing_left, snapshot

pytestmark = pytest.mark.strict_sandbox

# Where the modules that run inside the sandbox live (bound read-only there).
SANDBOX_DIR = Path(strict.__file__).resolve().parent / "child"
FAKE_KEY = "gsk_fake_key_that_must_not_leak"
ALLOWED_ENV = {"PATH", "HOME", "MALLOC_ARENA_MAX", "PYTHONDONTWRITEBYTECODE", "PWD", "LC_CTYPE"}


def _require_userns() -> None:
    reason = strict.userns_disabled_reason()
    if reason is not None:
        pytest.skip(f"the kernel forbids user namespaces here: {reason}")


def run_json(sb: Sandbox, code: str) -> Any:
    """Run ``code`` (which sets ``result``) in the sandbox and return ``result`` via JSON."""
    res = sb.run(textwrap.dedent(code) + "\nimport json as _j\nprint(_j.dumps(result))")
    assert res.error is None, res.error
    return json.loads(res.output.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def sb() -> Iterator[Sandbox]:
    """One strict sandbox for the read-only checks; a fake API key is in the host env."""
    _require_userns()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GROQ_API_KEY", FAKE_KEY)
        box = Sandbox("the payload " * 10, "the question", mode="strict")
        box.start()
    try:
        yield box
    finally:
        box.close()


# -- end to end through Sandbox(mode="strict") --------------------------------------------------
def test_normal_things_still_work(sb: Sandbox) -> None:
    got = run_json(
        sb,
        """
        import collections, csv, datetime, hashlib, json, math, os, re, sqlite3, statistics
        import subprocess, sys, threading
        with open("notes.txt", "w") as f:
            f.write("kept")
        out = []
        t = threading.Thread(target=out.append, args=(len(context),))
        t.start(); t.join()
        child = subprocess.run([sys.executable, "-c", "print(6 * 7)"], capture_output=True)
        with open("/tmp/private.txt", "w") as f:
            f.write("tmp works")
        result = {
            "context": context[:11], "query": query, "thread": out,
            "child": child.stdout.decode().strip(), "cwd": os.getcwd(),
            "home": os.environ.get("HOME"), "notes": open("notes.txt").read(),
            "tmp": open("/tmp/private.txt").read(),
        }
        """,
    )
    assert got["context"] == "the payload"
    assert got["query"] == "the question"
    assert got["thread"] == [len("the payload " * 10)]
    assert got["child"] == "42"
    assert got["home"] == got["cwd"]
    assert got["notes"] == "kept" and got["tmp"] == "tmp works"
    # The scratch dir is the host's: what the code wrote there is visible outside.
    assert (Path(got["cwd"]) / "notes.txt").read_text() == "kept"
    print_res = sb.run("print('hello from strict')")
    assert print_res.output == "hello from strict\n"


def test_tcp_to_host_listener_is_unreachable(sb: Sandbox) -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    try:
        got = run_json(
            sb,
            f"""
            import socket
            try:
                socket.create_connection(("127.0.0.1", {port}), timeout=5).close()
                result = {{"connect": "connected"}}
            except OSError as exc:
                result = {{"connect": type(exc).__name__}}
            result["interfaces"] = sorted(name for _i, name in socket.if_nameindex())
            """,
        )
        assert got["connect"] in ("ConnectionRefusedError", "PermissionError"), got
        # Its own network namespace: only a loopback device, not the host's interfaces.
        assert got["interfaces"] == ["lo"]
        listener.setblocking(False)
        with pytest.raises(BlockingIOError):
            listener.accept()
    finally:
        listener.close()


def test_writes_outside_scratch_are_denied(sb: Sandbox, tmp_path: Path) -> None:
    scratch = Path(run_json(sb, "import os; result = os.getcwd()"))
    targets = [
        SANDBOX_DIR / "pwned.txt",  # bound read-only (the worker's own code)
        Path(sys.prefix) / "pwned.txt",  # the venv
        Path("/etc/pwned.txt"),
        Path("/pwned.txt"),
        Path.cwd() / "pwned.txt",  # the repo (not bound at all)
        tmp_path / "pwned.txt",
    ]
    got = run_json(
        sb,
        f"""
        result = {{}}
        for path in {[str(t) for t in targets]!r}:
            try:
                with open(path, "w") as f:
                    f.write("x")
                result[path] = "written"
            except OSError as exc:
                result[path] = type(exc).__name__
        """,
    )
    # Under /tmp a path lands in the sandbox's private tmpfs (bwrap creates the parents of any
    # bind there, e.g. of a venv in a checkout under /tmp): the write may succeed inside, but
    # it must never reach the host. Everywhere else the write itself must fail.
    private = [p for p, v in got.items() if v == "written" and p.startswith("/tmp/")]
    assert all(v != "written" for p, v in got.items() if p not in private), got
    assert all(not p.startswith(str(SANDBOX_DIR)) and not p.startswith(sys.prefix) for p in private)
    for target in targets:
        assert not target.exists(), target
    # The sandbox's /tmp is private: a file written there never reaches the host's /tmp.
    leak = scratch.parent / "rlm-strict-leak.txt"
    sb.run(f"open({str(leak)!r}, 'w').write('x')")
    assert not leak.exists()


def test_host_processes_are_invisible_and_unsignalable(sb: Sandbox) -> None:
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        got = run_json(
            sb,
            f"""
            import os, signal
            result = {{}}
            for name, pid in (("host", {os.getpid()}), ("victim", {victim.pid})):
                try:
                    os.kill(pid, signal.SIGTERM if name == "victim" else 0)
                    result[name] = "signalled"
                except OSError as exc:
                    result[name] = type(exc).__name__
            result["pids"] = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
            result["ppid"] = os.getppid()
            """,
        )
        assert victim.poll() is None, "a host process was killed from inside the sandbox"
        # Pids that happen to exist in the sandbox's own pid namespace are its own processes.
        for name, pid in (("host", os.getpid()), ("victim", victim.pid)):
            if pid not in got["pids"]:
                assert got[name] == "ProcessLookupError", got
        assert len(got["pids"]) < 20, got["pids"]
        assert got["ppid"] != os.getpid()
    finally:
        victim.kill()
        victim.wait()


def test_host_files_outside_binds_are_invisible(sb: Sandbox, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("host secret")
    got = run_json(
        sb,
        f"""
        import os
        result = {{}}
        for path in ({str(secret)!r}, "/etc/passwd", "/etc/hostname", "/root/.bashrc"):
            try:
                result[path] = open(path).read()
            except OSError as exc:
                result[path] = type(exc).__name__
        result["etc"] = sorted(os.listdir("/etc"))
        """,
    )
    assert got[str(secret)] == "FileNotFoundError"
    assert got["/etc/passwd"] == "FileNotFoundError"
    assert got["/etc/hostname"] == "FileNotFoundError"
    assert got["/root/.bashrc"] == "FileNotFoundError"
    assert set(got["etc"]) <= {"ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime"}


def test_mount_remount_and_new_namespaces_fail(sb: Sandbox) -> None:
    got = run_json(
        sb,
        """
        import ctypes, os
        libc = ctypes.CDLL(None, use_errno=True)
        MS_REMOUNT, MS_BIND = 32, 4096
        def call(fn, *args):
            ctypes.set_errno(0)
            rc = fn(*args)
            return [rc, os.strerror(ctypes.get_errno()) if rc != 0 else ""]
        result = {
            "tmpfs": call(libc.mount, b"none", b"/tmp", b"tmpfs", 0, None),
            "remount_rw": call(libc.mount, None, b"/", None, MS_REMOUNT, None),
            "remount_bind": call(libc.mount, None, b"/usr", None, MS_REMOUNT | MS_BIND, None),
            "umount": call(libc.umount2, b"/usr", 2),
            "unshare_user": call(libc.unshare, 0x10000000),
            "unshare_mnt": call(libc.unshare, 0x00020000),
        }
        try:
            open("/usr/pwned", "w")
            result["usr_write"] = "written"
        except OSError as exc:
            result["usr_write"] = type(exc).__name__
        """,
    )
    for key in ("tmpfs", "remount_rw", "remount_bind", "umount", "unshare_user", "unshare_mnt"):
        assert got[key][0] == -1, (key, got)
    assert got["usr_write"] != "written"
    assert not Path("/usr/pwned").exists()


def test_uid_capabilities_and_layers(sb: Sandbox) -> None:
    got = run_json(
        sb,
        """
        import os
        status = dict(
            line.split(":", 1) for line in open("/proc/self/status").read().splitlines()
        )
        result = {k: status[k].strip() for k in
                  ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp")}
        result["uid"] = [os.getuid(), os.geteuid(), os.getgid(), os.getegid()]
        """,
    )
    assert got["uid"] == [65534, 65534, 65534, 65534]
    for key in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(got[key], 16) == 0, (key, got[key])
    assert got["NoNewPrivs"] == "1"
    assert got["Seccomp"] == "2", "the worker did not apply its seccomp layer (child/confine.py)"


def test_environment_is_empty_of_host_secrets(sb: Sandbox) -> None:
    assert os.environ.get("GROQ_API_KEY") != FAKE_KEY  # the fixture's setenv is undone
    got = run_json(sb, "import os; result = dict(os.environ)")
    assert "GROQ_API_KEY" not in got
    assert FAKE_KEY not in json.dumps(got)
    assert set(got) <= ALLOWED_ENV, set(got) - ALLOWED_ENV
    assert got["MALLOC_ARENA_MAX"] == "2"


def test_global_sysctls_are_read_only(sb: Sandbox) -> None:
    # uid 65534 inside is host root: without the read-only /proc/sys this write succeeds.
    got = run_json(
        sb,
        """
        path = "/proc/sys/kernel/randomize_va_space"
        value = open(path).read()
        try:
            with open(path, "w") as f:
                f.write(value)  # the same value: harmless if the denial ever regresses
            result = "written"
        except OSError as exc:
            result = type(exc).__name__
        """,
    )
    assert got != "written"


def test_root_only_kernel_views_are_masked(sb: Sandbox) -> None:
    # Mode 0400 files that uid 65534 (host root, inside) could otherwise read.
    names = ("slabinfo", "kpageflags", "vmallocinfo", "timer_list", "pagetypeinfo")
    paths = [f"/proc/{name}" for name in names if os.path.exists(f"/proc/{name}")]
    got = run_json(
        sb,
        f"""
        result = {{}}
        for path in {paths!r}:
            try:
                with open(path, "rb") as f:
                    result[path] = len(f.read(4096))
            except OSError as exc:
                result[path] = type(exc).__name__
        """,
    )
    assert set(got) == set(paths)
    assert all(v == 0 or isinstance(v, str) for v in got.values()), got


def test_strict_sandbox_survives_a_kill_and_stays_strict() -> None:
    _require_userns()
    with Sandbox("ctx", mode="strict", exec_timeout=1.0) as box:
        # Catching BaseException defeats the interrupt: the worker is killed and re-forked.
        res = box.run(
            "while True:\n    try:\n        sum(range(10**12))\n"
            "    except BaseException:\n        pass"
        )
        assert res.timed_out and res.restarted
        got = run_json(
            box,
            """
            import os
            result = [os.getuid(), open("/proc/self/status").read().count("Seccomp:\\t2")]
            """,
        )
        assert got == [65534, 1]


def test_strict_close_leaves_nothing_behind() -> None:
    _require_userns()
    before = snapshot()
    box = Sandbox("ctx", mode="strict", exec_timeout=0.5)
    box.run("import subprocess\nsubprocess.Popen(['setsid', 'sleep', '303'])")
    box.run("import os\nos._exit(3)")
    box.run("sum(range(10**12))")
    scratch = box._res.scratch
    assert scratch is not None and os.path.isdir(scratch)
    box.close()
    assert_nothing_left(before, scratch)
    # Nothing of the sandbox survives on the host: not bubblewrap, not the detached sleep.
    leftovers = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if scratch.encode() in cmdline or cmdline.startswith(b"sleep 303"):
                leftovers.append(cmdline.decode(errors="replace"))
    assert leftovers == []


# -- setup failures ----------------------------------------------------------------------------
def test_missing_bwrap_fails_with_install_hint(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("RLM_GRAPH_BWRAP", "system")  # and not the bundled fallback either
    with pytest.raises(SandboxError, match=r"apt-get install bubblewrap"):
        strict.check_available()
    box = Sandbox("ctx", mode="strict")
    try:
        with pytest.raises(SandboxError, match=r"bubblewrap"):
            box.start()
    finally:
        box.close()


def test_failing_probe_reports_bwrap_stderr(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _require_userns()
    fake = tmp_path / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: setting up uid map: Permission denied' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("RLM_GRAPH_BWRAP", "system")  # the fake on PATH, even when CI hides it
    for _ in range(2):  # the second answer comes from the per-process cache
        with pytest.raises(SandboxError, match=r"setting up uid map: Permission denied"):
            strict.check_available()


def test_too_old_bwrap_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _require_userns()
    fake = tmp_path / "bwrap"
    fake.write_text(
        '#!/bin/sh\nif [ "$1" = --version ]; then echo bubblewrap 0.6.1; exit 0; fi\n'
        "echo 'bwrap: Unknown option --disable-userns' >&2\nexit 1\n"
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("RLM_GRAPH_BWRAP", "system")  # the fake on PATH, even when CI hides it
    with pytest.raises(SandboxError, match=r"bubblewrap 0\.6\.1 is too old.*>= 0\.8"):
        strict.check_available()


def test_wrap_command_rejects_bad_paths(tmp_path: Path) -> None:
    _require_userns()
    with pytest.raises(SandboxError, match="does not exist"):
        strict.wrap_command(
            ["true"], scratch_dir=str(tmp_path), read_only_paths=["/nonexistent/x"], pass_fds=[]
        )
    with pytest.raises(SandboxError, match="whole host filesystem"):
        strict.wrap_command(["true"], scratch_dir=str(tmp_path), read_only_paths=["/"], pass_fds=[])
    with pytest.raises(SandboxError, match="not a directory"):
        strict.wrap_command(
            ["true"], scratch_dir=str(tmp_path / "missing"), read_only_paths=[], pass_fds=[]
        )


# -- the bubblewrap layer alone (wrap_command + subprocess) ------------------------------------
def test_wrap_command_flags(tmp_path: Path) -> None:
    _require_userns()
    cmd = strict.wrap_command(
        [sys.executable, "-c", "pass"], scratch_dir=str(tmp_path), read_only_paths=[], pass_fds=[]
    )
    for flag in ("--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent"):
        assert flag in cmd
    for pair in (["--cap-drop", "ALL"], ["--uid", "65534"], ["--gid", "65534"]):
        assert any(cmd[i : i + 2] == pair for i in range(len(cmd))), pair
    assert "--clearenv" in cmd and "--new-session" in cmd
    rw = [cmd[i + 2] for i, arg in enumerate(cmd) if arg == "--bind"]
    assert rw == [str(tmp_path)]
    assert cmd[cmd.index("--chdir") + 1] == str(tmp_path)
    assert cmd[-3:] == [sys.executable, "-c", "pass"]
    # A path inside scratch is visible through it; its own bind would pin a deleted payload.
    payload = tmp_path / ".context.payload"
    payload.write_text("x")
    extra = tmp_path.parent / "extra.txt"
    extra.write_text("x")
    cmd = strict.wrap_command(
        [sys.executable, "-c", "pass"], scratch_dir=str(tmp_path),
        read_only_paths=[str(payload), str(extra)], pass_fds=[],
    )  # fmt: skip
    ro = [cmd[i + 2] for i, arg in enumerate(cmd) if arg == "--ro-bind"]
    assert str(extra) in ro and str(payload) not in ro


def test_wrapped_process_gets_no_host_env(tmp_path: Path) -> None:
    _require_userns()
    cmd = strict.wrap_command(
        [sys.executable, "-I", "-c", "import json, os; print(json.dumps(dict(os.environ)))"],
        scratch_dir=str(tmp_path), read_only_paths=[], pass_fds=[],
    )  # fmt: skip
    env = {**os.environ, "GROQ_API_KEY": FAKE_KEY, "OPENAI_API_KEY": FAKE_KEY}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    got = json.loads(proc.stdout)
    assert FAKE_KEY not in proc.stdout
    assert set(got) <= ALLOWED_ENV, set(got) - ALLOWED_ENV
    assert got["HOME"] == str(tmp_path)


def test_inherited_fd_works_and_killing_bwrap_kills_everything(tmp_path: Path) -> None:
    _require_userns()
    r, w = os.pipe()
    code = textwrap.dedent(
        f"""
        import os, subprocess, sys, time
        os.write({w}, b"fd ok;")
        # A grandchild that also holds the pipe: EOF on the host means it died too.
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"], pass_fds=[{w}])
        print("ready", flush=True)
        time.sleep(300)
        """
    )
    cmd = strict.wrap_command(
        [sys.executable, "-I", "-c", code], scratch_dir=str(tmp_path), read_only_paths=[],
        pass_fds=[w],
    )  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, pass_fds=[w])
    os.close(w)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"ready\n"
        assert os.read(r, 100) == b"fd ok;"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        # A guard against hanging, not a timing assertion: every holder of `w` must be gone.
        ready, _, _ = select.select([r], [], [], 60)
        assert ready, "processes inside the sandbox outlived bubblewrap"
        assert os.read(r, 100) == b""
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        os.close(r)


# -- the worker's own layer (child/confine.py), without bubblewrap ----------------------------
def test_confine_layer_alone_denies_writes_tcp_and_namespaces(tmp_path: Path) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    # Outside /tmp: without bubblewrap, the /tmp that confine leaves writable is the host's.
    outside_dir = Path(tempfile.mkdtemp(prefix="rlm-confine-", dir="/var/tmp"))
    outside = outside_dir / "outside.txt"
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    code = textwrap.dedent(
        f"""
        import ctypes, json, os, socket, subprocess, sys, threading
        sys.path.insert(0, {str(SANDBOX_DIR)!r})
        import confine
        status = confine.apply({str(scratch)!r})
        libc = ctypes.CDLL(None, use_errno=True)
        def attempt(fn):
            try:
                fn()
                return "ok"
            except OSError as exc:
                return type(exc).__name__
        def errno_of(rc):
            return ctypes.get_errno() if rc != 0 else 0
        t = threading.Thread(target=lambda: None); t.start(); t.join()
        result = {{
            "status": status,
            "scratch": attempt(lambda: open({str(scratch / "in.txt")!r}, "w").write("x")),
            "outside": attempt(lambda: open({str(outside)!r}, "w").write("x")),
            "read": attempt(lambda: open("/etc/hostname").read()),
            "tcp": attempt(lambda: socket.create_connection(("127.0.0.1", {port}), 5)),
            "unshare": errno_of(libc.unshare(0x10000000)),
            "mount": errno_of(libc.mount(b"none", b"/mnt", b"tmpfs", 0, None)),
            "ptrace": errno_of(libc.ptrace(16, os.getppid(), None, None)),
            "child": subprocess.run([sys.executable, "-c", "print(1)"],
                                    capture_output=True).stdout.decode().strip(),
        }}
        print(json.dumps(result))
        """
    )
    try:
        proc = subprocess.run(
            [sys.executable, "-I", "-c", code], capture_output=True, text=True, cwd=scratch
        )
    finally:
        listener.close()
        leaked = outside.exists()
        shutil.rmtree(outside_dir, ignore_errors=True)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    status = got["status"]
    assert status["no_new_privs"] is True
    assert got["scratch"] == "ok" and got["read"] in ("ok", "FileNotFoundError")
    assert got["child"] == "1"
    if status["landlock"]:
        assert got["outside"] == "PermissionError"
        assert not leaked
        if status["landlock_abi"] >= 4:
            assert got["tcp"] == "PermissionError"
    else:
        assert "landlock" in status["errors"]
    if status["seccomp"]:
        assert got["unshare"] == got["mount"] == got["ptrace"] == 1  # EPERM
    else:
        assert "seccomp" in status["errors"]


def test_confine_reports_threads_and_syncs_seccomp_to_them(tmp_path: Path) -> None:
    code = textwrap.dedent(
        f"""
        import ctypes, json, sys, threading
        sys.path.insert(0, {str(SANDBOX_DIR)!r})
        import confine
        go, out = threading.Event(), {{}}
        def other():
            go.wait()
            libc = ctypes.CDLL(None, use_errno=True)
            out["rc"] = libc.unshare(0x10000000)
            out["errno"] = ctypes.get_errno()
        t = threading.Thread(target=other)
        t.start()
        status = confine.apply({str(tmp_path)!r})
        go.set(); t.join()
        print(json.dumps({{"status": status, **out}}))
        """
    )
    proc = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["status"]["threads"] == 2
    if got["status"]["seccomp"]:
        # Applied from the main thread, enforced in the thread that already existed.
        assert [got["rc"], got["errno"]] == [-1, 1]
    else:
        assert "seccomp" in got["status"]["errors"]


def test_landlock_rulesets_of_every_abi_up_to_the_kernels(tmp_path: Path) -> None:
    """Older kernels get rulesets masked to their ABI; each must still confine writes."""
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    outside_dir = Path(tempfile.mkdtemp(prefix="rlm-landlock-", dir="/var/tmp"))
    code = textwrap.dedent(
        f"""
        import json, os, sys
        sys.path.insert(0, {str(SANDBOX_DIR)!r})
        import confine
        libc = confine._Libc()
        try:
            kernel_abi = confine.landlock_abi(libc)
        except OSError as exc:
            print(json.dumps({{"unavailable": str(exc)}}))
            raise SystemExit(0)
        results = {{}}
        for abi in range(1, kernel_abi + 1):
            pid = os.fork()
            if pid == 0:
                libc.prctl(confine.PR_SET_NO_NEW_PRIVS, 1)
                confine._apply_landlock(libc, abi, {str(scratch)!r})
                open(os.path.join({str(scratch)!r}, f"ok{{abi}}"), "w").close()
                try:
                    open(os.path.join({str(outside_dir)!r}, f"x{{abi}}"), "w").close()
                    os._exit(3)
                except PermissionError:
                    os._exit(0)
            results[abi] = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        print(json.dumps({{"kernel_abi": kernel_abi, "results": results}}))
        """
    )
    try:
        proc = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True)
        written = sorted(p.name for p in outside_dir.iterdir())
    finally:
        shutil.rmtree(outside_dir, ignore_errors=True)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    if "unavailable" in got:
        return  # no Landlock in this kernel: apply() reports it (checked above)
    assert got["results"] == {str(abi): 0 for abi in range(1, got["kernel_abi"] + 1)}, proc.stderr
    assert written == []
    assert sorted(p.name for p in scratch.iterdir()) == [
        f"ok{abi}" for abi in range(1, got["kernel_abi"] + 1)
    ]


@pytest.mark.parametrize("machine", ["x86_64", "aarch64"])
def test_seccomp_program_shape(machine: str) -> None:
    from rlm_graph.sandbox.child import confine

    prog = confine.seccomp_program(machine)
    assert len(prog) % 8 == 0
    import struct

    insns = [struct.unpack("=HBBI", prog[i : i + 8]) for i in range(0, len(prog), 8)]
    assert insns[0] == (confine.BPF_LD_W_ABS, 0, 0, confine.OFFSET_ARCH)
    assert insns[1][3] == confine.ARCHES[machine]["audit_arch"]
    rets = [k for code, _jt, _jf, k in insns if code == confine.BPF_RET_K]
    assert confine.RET_ALLOW in rets and (confine.RET_ERRNO | 1) in rets
    for index, (code, jt, jf, _k) in enumerate(insns):
        if code not in (confine.BPF_LD_W_ABS, confine.BPF_RET_K):
            assert index + 1 + max(jt, jf) < len(insns)
    with pytest.raises(ValueError, match="no seccomp syscall table"):
        confine.seccomp_program("sparc")
