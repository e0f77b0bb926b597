"""Durable runs (issue 13): the payload out of state, resume in a new graph / a new process
with the REPL rebuilt by replay, the tree budget continued across a crash."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import BaseMessage, HumanMessage
from langgraph.checkpoint.sqlite import SqliteSaver

from rlm_graph import build_graph
from rlm_graph.payload_store import NAMESPACE, content_hash
from tests.fakes import FakeChatModel, code, final, is_subcall, recursive_model, turn
from tests.jobs import child_pids

ROOT = Path(__file__).resolve().parents[1]
MARKER = "PAYLOAD-MARKER-7f3a"


def _blobs_with(db: Path, needle: bytes) -> dict[str, int]:
    """How many rows of each table of the SQLite file contain ``needle``."""
    conn = sqlite3.connect(db)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        counts = {}
        for table in tables:
            n = 0
            for row in conn.execute(f'SELECT * FROM "{table}"'):
                for cell in row:
                    raw = cell.encode() if isinstance(cell, str) else cell
                    if isinstance(raw, bytes) and needle in raw:
                        n += 1
            counts[table] = n
        return counts
    finally:
        conn.close()


def _graph(db: Path, model: FakeChatModel, **settings: Any) -> Any:
    conn = sqlite3.connect(db, check_same_thread=False)
    return build_graph(model=model, checkpointer=SqliteSaver(conn), **settings)


def _payload() -> str:
    """Text with the marker in its middle, away from the preview the prompt shows."""
    half = "some long text\n" * 1000
    return half + MARKER + half


def test_context_file_payload_is_stored_once_beside_the_checkpoints(tmp_path: Path) -> None:
    path = tmp_path / "input.txt"
    path.write_text(_payload())
    db = tmp_path / "c.db"
    model = FakeChatModel(
        respond=lambda m: [code("print(len(context))"), code("print(context[:5])"), final("x")][
            min(turn(m), 2)
        ]
    )
    graph = _graph(db, model)
    config: Any = {"configurable": {"thread_id": "t"}}
    out = graph.invoke({"query": "how long?", "context_file": str(path)}, config)
    assert out["answer"] == "x"
    assert str(len(_payload())) in str(
        model.prompts[1][-1].content
    )  # the sandbox saw the file's text
    counts = _blobs_with(db, MARKER.encode())
    assert counts.pop("store") == 1  # the payload, once
    assert sum(counts.values()) == 0, counts  # in no checkpoint and no write
    state = graph.get_state(config).values
    assert state.get("payload") is None and state.get("context_file") is None


def test_payload_by_value_leaves_state_at_start(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    model = FakeChatModel(
        respond=lambda m: [code("print(len(context))"), code("print(1)"), final("x")][
            min(turn(m), 2)
        ]
    )
    graph = _graph(db, model)
    config: Any = {"configurable": {"thread_id": "t"}}
    graph.invoke({"query": "how long?", "context": _payload()}, config)
    history = list(graph.get_state_history(config))
    after_start = [s for s in history if s.metadata and s.metadata.get("step", -1) >= 1]
    assert len(after_start) >= 5
    for snap in after_start:
        assert MARKER not in json.dumps(snap.values, default=str), snap.metadata
    # `context` is an untracked channel: no write and no state holds it. LangGraph's input
    # checkpoint (step -1) records the input as given; context_file avoids that copy.
    counts = _blobs_with(db, MARKER.encode())
    assert counts.pop("store") == 1
    assert counts.pop("checkpoints") == 1
    assert sum(counts.values()) == 0, counts
    with_input = [s for s in history if MARKER in json.dumps(s.values, default=str)]
    assert with_input == []


def test_child_payload_goes_by_reference(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    path = tmp_path / "input.txt"
    path.write_text(_payload())
    graph = _graph(db, recursive_model())
    out = graph.invoke(
        {"query": "measure", "context_file": str(path)}, {"configurable": {"thread_id": "t"}}
    )
    assert out["answer"] == f"child saw {len(_payload())} chars"
    counts = _blobs_with(db, MARKER.encode())
    assert counts.pop("store") == 1  # the child's payload is the same text: stored once
    assert sum(counts.values()) == 0, counts


def test_resume_in_a_new_graph_replays_the_repl_without_model_calls(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    seen: list[str] = []

    def respond(messages: list[BaseMessage]) -> str:
        if is_subcall(messages):
            seen.append("sub")
            return "forty-one"
        return [
            code("import random\nw = llm_query('name 41')\nx = 41\nprint(w, random.random())"),
            code("print(x + 1)"),
            final("done"),
        ][min(turn(messages), 2)]

    first = FakeChatModel(respond=respond)
    config: Any = {"configurable": {"thread_id": "t"}}
    graph = _graph(db, first, max_llm_calls=4)
    graph.invoke({"query": "q", "context": "c"}, config, interrupt_before=["execute"])
    graph.invoke(None, config, interrupt_before=["execute"])  # block 1 ran; paused before 2
    assert first.calls == 3 and seen == ["sub"]  # 2 root turns + the sub-call
    second = FakeChatModel(respond=respond)  # a new graph: no live sandbox, no live budget
    events = []
    fresh = _graph(db, second, max_llm_calls=4)
    for ev in fresh.stream(None, config, stream_mode="custom"):
        events.append(ev)
    out = fresh.get_state(config).values
    assert out["answer"] == "done" and out["stopped_reason"] == "final_answer"
    assert seen == ["sub"]  # the replayed llm_query was answered from the record
    assert second.calls == 1  # only the turn that had not happened yet
    observation = second.prompts[0][-1]
    assert isinstance(observation, HumanMessage)
    assert "42" in str(observation.content)
    assert "iteration 1, block 1" in str(observation.content)  # random.random() diverged
    assert [e["iteration"] for e in events if e["event"] == "observation"] == [2]
    assert out["usage"]["llm_calls"] == 4  # 3 root turns + 1 sub-call, counted once
    assert out["tree_spent"]["reserved"] == 4


def test_resumed_tree_budget_continues(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    replies = [code("x = 1"), code("print(x)"), code("print(2)"), final("done")]
    config: Any = {"configurable": {"thread_id": "t"}}
    graph = _graph(db, FakeChatModel(respond=lambda m: replies[min(turn(m), 3)]), max_llm_calls=2)
    graph.invoke({"query": "q"}, config, interrupt_before=["execute"])
    graph.invoke(None, config, interrupt_before=["execute"])
    later = FakeChatModel(respond=lambda m: replies[min(turn(m), 3)])
    out = _graph(db, later, max_llm_calls=2).invoke(None, config)
    assert later.calls == 0  # the 2 calls were spent before the resume
    assert out["stopped_reason"] == "budget"


# ---- real processes: SIGKILL during a block, resume in a new process ------------------------


def _start(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.durable_run", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        kids = child_pids(todo.pop())
        out += kids
        todo += kids
    return out


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize(
    ("child", "max_calls", "answer", "calls"),
    [
        (False, None, "42", 3),
        (False, 3, "42", 3),  # exactly enough, across the crash
        (False, 2, None, 2),  # one too few: the resumed run may not make a 3rd call
        (True, None, "42 bird", 5),
    ],
)
def test_sigkill_during_a_block_then_resume_in_a_new_process(
    tmp_path: Path, child: bool, max_calls: int | None, answer: str | None, calls: int
) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp)}
    db, log = tmp_path / "c.db", tmp_path / "calls.log"
    args = [str(db), "t1", str(log), "--sleep", "4"] + (["--child"] if child else [])
    if max_calls is not None:
        args += ["--max-llm-calls", str(max_calls)]
    proc = _start(args, env)
    try:
        assert proc.stdout is not None
        wanted = "time.sleep"
        for line in proc.stdout:
            if wanted in line and '"code"' in line:
                break
        time.sleep(1.0)  # inside the sleeping block (the child's, with --child)
        assert proc.poll() is None
        sandbox = _descendants(proc.pid)
        assert sandbox, "the run has sandbox processes"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in sandbox) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(p) for p in sandbox), "sandbox processes outlived their host"
    calls_before = len(log.read_text().splitlines())
    resumed = subprocess.run(
        [sys.executable, "-m", "tests.durable_run", *args, "--resume"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    result = json.loads(resumed.stdout.splitlines()[-1])["result"]
    total = len(log.read_text().splitlines())
    assert calls_before < total or max_calls == 2
    assert total == calls, log.read_text()
    if answer is None:
        assert result["stopped_reason"] == "budget"
    else:
        assert result["answer"] == answer and result["stopped_reason"] == "final_answer"
        assert result["iterations"] == 3
    events = [json.loads(x) for x in resumed.stdout.splitlines()[:-1]]
    root_obs = [e["iteration"] for e in events if e["event"] == "observation" and e["depth"] == 0]
    assert root_obs and min(root_obs) >= 2  # iteration numbers continue
    assert list(tmp.iterdir()) == [], "scratch dirs left behind"


def test_store_keys_are_content_hashes(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    graph = _graph(db, FakeChatModel(respond=lambda m: code("final_answer(len(context))")))
    graph.invoke({"query": "q", "context": ["a", "b"]}, {"configurable": {"thread_id": "t"}})
    conn = sqlite3.connect(db)
    keys = [
        r[0] for r in conn.execute("SELECT key FROM store WHERE prefix = ?", (".".join(NAMESPACE),))
    ]
    assert keys == [content_hash(["a", "b"])]
