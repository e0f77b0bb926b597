"""Issue 2, section 5: hostile or broken blocks, after which the sandbox must still work."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

from rlm_graph.sandbox import ExecResult, Sandbox, strict

TIMEOUT = 1.0
# Ignores interrupts: they land on a loop's backward jump, so the busy loop sits inside the try.
UNSTOPPABLE = (
    "n = 0\nwhile True:\n    try:\n        while True:\n            n += 1\n"
    "    except BaseException:\n        pass"
)


@pytest.fixture(params=["process", pytest.param("strict", marks=pytest.mark.strict_sandbox)])
def sandbox(request: pytest.FixtureRequest) -> Iterator[Sandbox]:
    """The same hostile blocks in both modes (strict: pids are namespaced, bwrap in between)."""
    if request.param == "strict":
        reason = strict.userns_disabled_reason()
        if reason is not None:
            pytest.skip(f"the kernel forbids user namespaces here: {reason}")
    with Sandbox(
        "payload text", "q", mode=request.param, exec_timeout=TIMEOUT, max_processes=64
    ) as sb:
        sb.run("kept = 'still here'")
        yield sb


def assert_usable(sb: Sandbox, *, variables_kept: bool) -> None:
    result = sb.run("print(len(context), query)\nprint(globals().get('kept'))")
    assert result.error is None, result.error
    expected = "still here" if variables_kept else "None"
    assert result.output == f"12 q\n{expected}\n"


def assert_restarted(result: ExecResult) -> None:
    assert result.restarted
    assert result.error is not None
    assert "VARIABLES" in result.error and "LOST" in result.error


def test_infinite_loop_is_interrupted_and_keeps_variables(sandbox: Sandbox) -> None:
    result = sandbox.run("while True:\n    pass")
    assert result.timed_out and not result.restarted
    assert result.error is not None and "KeyboardInterrupt" in result.error
    assert "variables are kept" in result.error
    assert_usable(sandbox, variables_kept=True)


def test_catastrophic_regex(sandbox: Sandbox) -> None:
    result = sandbox.run("import re\nre.match(r'(a+)+$', 'a' * 64 + 'b')")
    assert result.timed_out
    assert_usable(sandbox, variables_kept=not result.restarted)


def test_uninterruptible_builtin_is_killed(sandbox: Sandbox) -> None:
    result = sandbox.run("sum(range(10**12))")
    assert result.timed_out
    assert_restarted(result)
    assert_usable(sandbox, variables_kept=False)


def test_loop_catching_base_exception_is_killed(sandbox: Sandbox) -> None:
    result = sandbox.run(UNSTOPPABLE)
    assert result.timed_out
    assert_restarted(result)
    assert "did not stop when interrupted" in (result.error or "")
    assert_usable(sandbox, variables_kept=False)


def test_memory_bomb_hits_the_address_space_limit() -> None:
    with Sandbox("x", exec_timeout=30, memory_limit_mb=256) as sb:
        sb.run("kept = 'still here'")
        result = sb.run("blocks = []\nwhile True:\n    blocks.append(bytearray(16 << 20))")
        assert result.error is not None and "MemoryError" in result.error
        assert not result.timed_out and not result.restarted
        assert sb.run("del blocks\nprint(kept)").output == "still here\n"


def test_fork_bomb_is_contained(sandbox: Sandbox) -> None:
    code = (
        "import os\nwhile True:\n    try:\n        os.fork()\n"
        "    except BaseException:\n        pass"
    )
    result = sandbox.run(code)
    assert result.timed_out
    assert_usable(sandbox, variables_kept=not result.restarted)
    # Nothing the bomb forked survives the block.
    count = sandbox.run("import os\nprint(len(os.listdir('/proc/self/task')))")
    assert count.error is None
    if sandbox._res.cgroup is not None and sandbox.mode == "process":
        assert len(sandbox._res.cgroup.pids()) == 2  # zygote + worker


def test_os_exit(sandbox: Sandbox) -> None:
    result = sandbox.run("import os\nprint('bye', flush=True)\nos._exit(1)")
    assert_restarted(result)
    assert "exited with status 1" in (result.error or "")
    assert result.output == "bye\n"
    assert not result.timed_out
    assert_usable(sandbox, variables_kept=False)


def test_sys_exit_is_an_ordinary_error(sandbox: Sandbox) -> None:
    result = sandbox.run("import sys\nsys.exit(3)")
    assert result.error is not None and "SystemExit: 3" in result.error
    assert not result.restarted
    assert_usable(sandbox, variables_kept=True)


def test_segfault_via_ctypes(sandbox: Sandbox) -> None:
    result = sandbox.run("import ctypes\nctypes.string_at(0)")
    assert_restarted(result)
    assert "SIGSEGV" in (result.error or "")
    assert_usable(sandbox, variables_kept=False)


def test_huge_print_is_capped() -> None:
    with Sandbox(exec_timeout=30, max_output_chars=1000) as sb:
        sb.run("kept = 'still here'")
        result = sb.run("print('x' * 300_000_000)")
        assert result.error is None, result.error
        assert result.output_chars == 300_000_001
        assert len(result.output) < 1200
        assert "300,000,001 characters in total" in result.output
        assert sb.run("print(kept)").output == "still here\n"


def test_direct_writes_to_fd_1_and_2(sandbox: Sandbox) -> None:
    code = (
        "import os, sys\n"
        "os.write(1, b'raw one\\n')\n"
        "os.write(2, b'\\x00\\x00\\x00\\x10not a frame\\n')\n"
        "print('printed', file=sys.stderr)\n"
        "import subprocess\n"
        "subprocess.run(['echo', 'from a child'])"
    )
    result = sandbox.run(code)
    assert result.error is None
    for part in ("raw one", "not a frame", "printed", "from a child"):
        assert part in result.output
    assert_usable(sandbox, variables_kept=True)


def test_closing_the_protocol_fd(sandbox: Sandbox) -> None:
    result = sandbox.run("import os\nos.close(3)")
    assert_restarted(result)
    assert_usable(sandbox, variables_kept=False)


def test_closing_every_fd(sandbox: Sandbox) -> None:
    result = sandbox.run("import os\nos.closerange(0, 1024)\nimport time\ntime.sleep(0.2)")
    assert_restarted(result)
    assert_usable(sandbox, variables_kept=False)


def test_grandchildren_are_killed_with_the_group(sandbox: Sandbox) -> None:
    code = (
        "import subprocess\n"
        "kid = subprocess.Popen(['sleep', '300'])\n"
        "loose = subprocess.Popen(['setsid', 'sleep', '301'])\n"
        "print(kid.pid, flush=True)\n" + UNSTOPPABLE
    )
    result = sandbox.run(code)
    assert_restarted(result)
    assert _gone_in(sandbox, int(result.output.split()[0]))
    assert _gone_in(sandbox, "sleep 301")
    assert_usable(sandbox, variables_kept=False)


def test_grandchild_of_interrupted_block_is_killed(sandbox: Sandbox) -> None:
    code = (
        "import subprocess\n"
        "kid = subprocess.Popen(['sleep', '302'])\n"
        "print(kid.pid, flush=True)\n"
        "while True: pass"
    )
    result = sandbox.run(code)
    assert result.timed_out and not result.restarted
    assert _gone_in(sandbox, int(result.output.split()[0]))
    assert_usable(sandbox, variables_kept=True)


def test_syntax_error_shows_traceback(sandbox: Sandbox) -> None:
    result = sandbox.run("x = 1\ndef broken(:\n    pass")
    assert result.error is not None
    assert "SyntaxError" in result.error and "def broken(:" in result.error
    assert "line 2" in result.error
    assert_usable(sandbox, variables_kept=True)


def test_keyboard_interrupt_raised_by_code(sandbox: Sandbox) -> None:
    result = sandbox.run("raise KeyboardInterrupt")
    assert result.error is not None and "KeyboardInterrupt" in result.error
    assert not result.timed_out and not result.restarted
    assert_usable(sandbox, variables_kept=True)


def test_model_code_ignoring_sigint(sandbox: Sandbox) -> None:
    result = sandbox.run(
        "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile 1: pass"
    )
    assert result.timed_out
    assert_restarted(result)
    assert_usable(sandbox, variables_kept=False)


def test_zygote_death_restarts_everything(sandbox: Sandbox) -> None:
    zygote = sandbox._res.zygote
    assert zygote is not None
    os.kill(zygote.proc.pid, signal.SIGKILL)
    zygote.proc.wait()
    result = sandbox.run("print(len(context))")
    assert result.restarted and result.output == "12\n"
    assert result.error is not None and "LOST" in result.error
    assert_usable(sandbox, variables_kept=False)


def _gone_in(sb: Sandbox, target: int | str) -> bool:
    """Whether a process (pid, or exact command line) is gone, as seen from inside the sandbox
    (in strict mode pids are namespaced). Polls for up to 5 s."""
    code = (
        "import os, time\n"
        "def alive(pid):\n"
        "    try:\n"
        "        with open(f'/proc/{pid}/stat') as f:\n"
        "            return f.read().rsplit(')', 1)[1].split()[0] != 'Z'\n"
        "    except OSError:\n"
        "        return False\n"
        "def matches(pid):\n"
        f"    if isinstance({target!r}, int):\n"
        f"        return pid == {target!r}\n"
        "    try:\n"
        "        with open(f'/proc/{pid}/cmdline', 'rb') as f:\n"
        f"            return f.read().replace(b'\\0', b' ').strip() == {str(target).encode()!r}\n"
        "    except OSError:\n"
        "        return False\n"
        "deadline = time.monotonic() + 5\n"
        "while True:\n"
        "    live = [p for p in map(int, filter(str.isdigit, os.listdir('/proc')))\n"
        "            if matches(p) and alive(p)]\n"
        "    if not live or time.monotonic() > deadline:\n"
        "        break\n"
        "    time.sleep(0.01)\n"
        "print(not live)"
    )
    sb.exec_timeout = 10
    try:
        result = sb.run(code)
    finally:
        sb.exec_timeout = TIMEOUT
    assert result.error is None, result.error
    return result.output == "True\n"


def test_escaped_grandchildren_are_killed_without_a_cgroup(monkeypatch: pytest.MonkeyPatch) -> None:
    # Without the pids cgroup (non-root hosts) the zygote, as subreaper, finds them itself.
    from rlm_graph.sandbox import resources

    monkeypatch.setattr(resources.PidsCgroup, "create", classmethod(lambda cls, *a, **k: None))
    monkeypatch.setattr(
        resources.MemoryCgroup, "create_memory", classmethod(lambda cls, *a, **k: None)
    )
    code = (
        "import subprocess\n"
        "subprocess.Popen(['setsid', 'sleep', '303'])\n"
        "import os, time\n"
        "time.sleep(0.2)\n"
        "os._exit(1)"
    )
    with Sandbox(exec_timeout=TIMEOUT) as sb:
        result = sb.run(code)
        assert sb._res.cgroup is None
        assert_restarted(result)
        assert _gone_in(sb, "sleep 303")
