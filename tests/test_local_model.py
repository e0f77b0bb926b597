"""The real offline model through the real graph (tier ``local_model``; slow on 2 cores).

Each scenario runs in a fresh Python process so that "the server stops when the process exits"
is tested for real. The model's accuracy is not asserted, only the mechanics.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from rlm_graph.local import local_extra_installed
from tests.jobs import child_pids, ctrl_c, foreground_job, read_until

pytestmark = [
    pytest.mark.local_model,
    pytest.mark.timeout(1200),
    pytest.mark.skipif(
        not local_extra_installed(),
        reason="the local extra is not installed (uv sync --extra local)",
    ),
]

ROOT = Path(__file__).resolve().parent.parent

_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from rlm_graph import build_graph
    from rlm_graph.local.server import server_pids

    spec = json.loads(sys.argv[1])
    model = "local"
    if spec.get("first_code"):
        # The root's first reply is scripted (it calls rlm_query); every other call, including
        # the whole child run, goes to the real local model.
        from langchain_core.language_models import BaseChatModel
        from langchain_core.messages import AIMessage
        from langchain_core.outputs import ChatGeneration, ChatResult
        from rlm_graph.models import resolve_model
        from tests.fakes import code, depth, turn

        real = resolve_model("local")

        class RootNudged(BaseChatModel):
            @property
            def _llm_type(self):
                return "root-nudged-local"

            def _generate(self, messages, stop=None, run_manager=None, **kwargs):
                if depth(messages) == 0 and turn(messages) == 0:
                    usage = {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}
                    msg = AIMessage(content=code(spec["first_code"], "delegate"),
                                    usage_metadata=usage)
                else:
                    msg = real.invoke(messages, stop=stop)
                return ChatResult(generations=[ChatGeneration(message=msg)])

        model = RootNudged()
    graph = build_graph(model=model, max_depth=spec["max_depth"],
                        max_iterations=spec["max_iterations"], max_output_chars=2000)
    if spec["task"] == "demo":
        from rlm_graph.demo import make_task
        task = make_task(seed=3, chars=spec["chars"])
        query, context = task.question, task.context
    else:
        from rlm_graph.demo import make_task
        context = make_task(seed=5, chars=spec["chars"]).context
        query = spec["query"]
    events = []
    result = {}
    for ns, mode, chunk in graph.stream({"query": query, "context": context},
                                        stream_mode=["custom", "values"], subgraphs=True):
        if mode == "custom":
            keys = ("event", "depth", "kind", "error", "code", "usage")
            events.append({k: chunk.get(k) for k in keys})
        elif mode == "values" and not ns:
            result = chunk
    print(json.dumps({
        "answer": result.get("answer"),
        "usage": result.get("usage"),
        "iterations": result.get("iterations"),
        "stopped_reason": result.get("stopped_reason"),
        "context_chars": len(context),
        "events": events,
        "server_pids": server_pids(),
    }))
    """
)


def _env() -> dict[str, str]:
    # A Thought and a short code block fit in 160 tokens; a smaller cap keeps the tier fast.
    # On a shared 2-core machine one call can take minutes: allow it rather than fail.
    env = dict(os.environ)
    env.setdefault("RLM_LOCAL_MAX_TOKENS", "160")
    env.setdefault("RLM_LOCAL_TIMEOUT", "900")
    return env


def _run(spec: dict[str, Any]) -> dict[str, Any]:
    env = _env()
    proc = subprocess.run(
        [sys.executable, "-c", _SCRIPT, json.dumps(spec)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1100,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie still answers kill(0); it is no longer a server.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")


def _wait_gone(pids: list[int]) -> list[int]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not all(_gone(p) for p in pids):
        time.sleep(0.2)
    return [p for p in pids if not _gone(p)]


def test_end_to_end_long_input_and_server_stops_at_exit() -> None:
    # ~120k chars of log ≈ 65k tokens: several times the 8k-token window.
    out = _run({"task": "demo", "chars": 120_000, "max_depth": 1, "max_iterations": 2})
    assert out["context_chars"] >= 120_000
    assert isinstance(out["answer"], str) and out["answer"].strip()
    assert out["iterations"] >= 1
    kinds = [e["event"] for e in out["events"]]
    assert "code" in kinds and "observation" in kinds, kinds
    usage = out["usage"]
    assert usage["llm_calls"] >= 1
    assert usage["input_tokens"] > 0 and usage["output_tokens"] > 0
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert len(out["server_pids"]) == 1  # one shared server, alive during the run
    assert _wait_gone(out["server_pids"]) == []


def test_recursion_with_the_real_model() -> None:
    first_code = "print(rlm_query('List the service names in this text.', context[:1500]))"
    out = _run(
        {
            "task": "query",
            "query": "Which service names appear at the start of the log?",
            "first_code": first_code,
            "chars": 5_000,
            "max_depth": 1,
            "max_iterations": 2,
        }
    )
    events = out["events"]
    assert any(e["event"] == "subcall_start" and e["kind"] == "rlm" for e in events)
    assert any(e["event"] == "subcall_end" and e["kind"] == "rlm" for e in events)
    assert any(e["event"] == "run_start" and e["depth"] == 1 for e in events)
    child_calls = [e for e in events if e["event"] == "model_reply" and e["depth"] == 1]
    assert child_calls, "the child run made no model call"
    assert all((e["usage"] or {}).get("input_tokens", 0) > 0 for e in child_calls)
    assert out["answer"].strip()
    # The tree's usage includes the child's real calls.
    assert out["usage"]["llm_calls"] >= 1 + len(child_calls)
    assert out["usage"]["input_tokens"] >= sum(e["usage"]["input_tokens"] for e in child_calls)
    assert _wait_gone(out["server_pids"]) == []


def test_demo_command_exits_zero() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "rlm_graph",
            "demo",
            "--chars",
            "60000",
            "--max-iterations",
            "2",
            "--model",
            "local",
        ],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=1100,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Expected:" in proc.stdout
    assert "Match:" in proc.stdout
    assert "Answer:" in proc.stdout


# ---- the server never outlives its host: Ctrl-C, an exception, SIGKILL -----------------------

_HOLD_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from rlm_graph.local.server import LocalSettings, get_server
    from rlm_graph.local.weights import ensure_packaged_weights

    server = get_server(ensure_packaged_weights(), LocalSettings.from_env())
    server.ensure_started()
    print(server.pid, flush=True)
    if sys.argv[1] == "raise":
        raise RuntimeError("the host fails after the server started")
    time.sleep(600)  # until the test kills us
    """
)


def _server_children(host_pid: int) -> list[int]:
    """The llama.cpp server processes whose parent is ``host_pid``."""
    found = []
    for pid in child_pids(host_pid):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"rlm_graph.local.server_main" in cmdline:
            found.append(pid)
    return found


def _hold(mode: str) -> tuple[subprocess.Popen[str], int]:
    """A host process (its own session, like a shell job) that started the server."""
    host = subprocess.Popen(
        [sys.executable, "-c", _HOLD_SCRIPT, mode],
        cwd=ROOT,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert host.stdout is not None and host.stderr is not None
    line = host.stdout.readline()
    if not line.strip().isdigit():
        host.kill()
        raise AssertionError(f"the host did not start the server: {host.stderr.read()[-2000:]}")
    return host, int(line)


def test_server_stops_when_the_host_raises() -> None:
    host, pid = _hold("raise")
    _, err = host.communicate(timeout=60)
    assert host.returncode == 1
    assert "the host fails after the server started" in err
    assert _wait_gone([pid]) == []


def test_server_stops_when_the_host_is_killed() -> None:
    host, pid = _hold("hold")
    assert not _gone(pid)
    host.kill()  # no atexit: the server's own parent watch must notice
    host.wait(timeout=30)
    assert _wait_gone([pid]) == []


def test_ctrl_c_during_a_demo_run_stops_the_server() -> None:
    # Ctrl-C in a terminal signals the foreground process group: here the CLI's own session.
    env = _env()
    env["RLM_LOCAL_MAX_TOKENS"] = "256"
    # One thread: the first call (a ~600-token prompt, then the reply) takes well over 10 s.
    env["RLM_LOCAL_THREADS"] = "1"
    cmd = [sys.executable, "-m", "rlm_graph", "demo", "--chars", "20000", "--model", "local"]
    with foreground_job(cmd, cwd=ROOT, env=env) as host:
        seen = read_until(host, lambda line: "Local model ready" in line)
        servers = _server_children(host.pid)
        assert len(servers) == 1, seen
        time.sleep(1)  # the first model call is under way
        # Promptly: the server is stopped first, so the call in flight fails at once instead
        # of holding the exit until the model has finished generating.
        err = ctrl_c(host, timeout=10)
    assert host.returncode == 130, err[-2000:]
    assert "interrupted" in err
    assert _wait_gone(servers) == []
