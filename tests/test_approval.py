"""Approval before code runs, at every depth (issue 13 item 4): interrupt() in execute with the
code, depth, path and query; resume with approve / edit / reject via Command(resume=...)."""

from __future__ import annotations

import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import BaseMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from rlm_graph import build_graph
from rlm_graph.approval import ReviewError, decide
from tests.fakes import FakeChatModel, code, depth, final, last_text, turn


def _model(ran: Path) -> FakeChatModel:
    """Depth 0 asks a child (depth 1) for a number; each block notes in ``ran`` that it ran."""
    mark = f"open({str(ran)!r}, 'a').write('{{}}\\n')"

    def respond(messages: list[BaseMessage]) -> str:
        d = depth(messages)
        if turn(messages) == 0:
            if d == 0:
                return code(mark.format("root") + "\nprint('child:', rlm_query('number?'))")
            return code(mark.format("child") + "\nprint(6 * 7)")
        seen = re.search(r"Observation:\n(.*)", last_text(messages))  # its first line
        return final(seen.group(1).strip() if seen else "nothing")

    return FakeChatModel(respond=respond)


def _interrupts(out: dict[str, Any]) -> list[Any]:
    return [i.value for i in out.get("__interrupt__", [])]


def _ran(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


CONFIG: Any = {"configurable": {"thread_id": "t"}}


def test_approve_at_depth_0_and_1(tmp_path: Path) -> None:
    ran = tmp_path / "ran"
    graph = build_graph(model=_model(ran), checkpointer=InMemorySaver(), approve="code")
    out = graph.invoke({"query": "What number?"}, CONFIG)
    [asked] = _interrupts(out)
    assert asked["kind"] == "approve_code" and asked["depth"] == 0
    assert asked["query"] == "What number?" and "rlm_query('number?')" in asked["code"]
    assert len(asked["path"]) == 1 and asked["iteration"] == 1
    assert _ran(ran) == []  # nothing runs before the decision
    out = graph.invoke(Command(resume={"action": "approve"}), CONFIG)
    [asked] = _interrupts(out)
    assert asked["depth"] == 1 and asked["query"] == "number?"
    assert len(asked["path"]) == 2 and asked["path"][0] != asked["path"][1]
    out = graph.invoke(Command(resume={"action": "approve"}), CONFIG)
    assert _interrupts(out) == []
    assert out["answer"] == "child: 42"
    # The root block ran twice (it was stopped at rlm_query by the child's interrupt, then
    # re-run from its start on resume); the child's block once.
    assert _ran(ran) == ["root", "root", "child"]


def test_subcalls_mode_reviews_only_child_code(tmp_path: Path) -> None:
    ran = tmp_path / "ran"
    graph = build_graph(model=_model(ran), checkpointer=InMemorySaver(), approve="subcalls")
    out = graph.invoke({"query": "What number?"}, CONFIG)
    [asked] = _interrupts(out)
    assert asked["depth"] == 1
    out = graph.invoke(Command(resume="approve"), CONFIG)
    assert out["answer"] == "child: 42"


@pytest.mark.parametrize("at_depth", [0, 1])
def test_edit_runs_the_edited_code_and_tells_the_model(tmp_path: Path, at_depth: int) -> None:
    ran = tmp_path / "ran"
    model = _model(ran)
    graph = build_graph(model=model, checkpointer=InMemorySaver(), approve="code")
    out = graph.invoke({"query": "What number?"}, CONFIG)
    if at_depth == 1:
        out = graph.invoke(Command(resume={"action": "approve"}), CONFIG)
    [asked] = _interrupts(out)
    assert asked["depth"] == at_depth
    out = graph.invoke(Command(resume={"action": "edit", "code": "print('edited', 1)"}), CONFIG)
    assert out["answer"] == ("edited 1" if at_depth == 0 else "child: edited 1")
    observations = [str(p[-1].content) for p in model.prompts if turn(p) == 1]
    assert any("edited 1" in o and "a reviewer edited your code" in o for o in observations)
    assert ("child" in _ran(ran)) is False  # the child's own code never ran
    if at_depth == 0:
        assert _ran(ran) == []


@pytest.mark.parametrize("at_depth", [0, 1])
def test_reject_makes_the_message_the_observation(tmp_path: Path, at_depth: int) -> None:
    ran = tmp_path / "ran"
    model = _model(ran)
    graph = build_graph(model=model, checkpointer=InMemorySaver(), approve="code")
    out = graph.invoke({"query": "What number?"}, CONFIG)
    if at_depth == 1:
        out = graph.invoke(Command(resume={"action": "approve"}), CONFIG)
    msg = {"action": "reject", "message": "no file writes, please"}
    out = graph.invoke(Command(resume=msg), CONFIG)
    expected = "A reviewer rejected this code; it did not run: no file writes, please"
    observations = [str(p[-1].content) for p in model.prompts if turn(p) == 1]
    assert any(expected in o for o in observations)
    assert "child" not in _ran(ran)
    if at_depth == 0:
        assert out["answer"] == expected and _ran(ran) == []
    else:
        assert out["answer"] == f"child: {expected}"


def test_a_bad_decision_is_a_clear_error() -> None:
    with pytest.raises(ReviewError, match="resume with"):
        decide({"action": "maybe"}, ["print(1)"])
    with pytest.raises(ReviewError):
        decide({"action": "edit", "code": "  "}, ["print(1)"])


def test_approve_setting_is_checked() -> None:
    with pytest.raises(ValueError, match="approve must be"):
        build_graph(model=FakeChatModel(respond=lambda m: "x"), approve="always")


def _processes_in(directory: Path) -> list[int]:
    """Processes whose working directory is ``directory`` (a sandbox's scratch dir)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.readlink(f"/proc/{entry}/cwd") == str(directory):
                    pids.append(int(entry))
            except OSError:
                continue
    return pids


def test_a_paused_runs_sandbox_is_closed_after_the_ttl_and_resume_replays(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # scratch dirs land here
    replies = [code("x = 41\nprint('set')"), code("print(x + 1)"), final("done")]
    model = FakeChatModel(respond=lambda m: replies[min(turn(m), 2)])
    graph = build_graph(model=model, checkpointer=InMemorySaver(), approve="code", sandbox_ttl=0.5)
    graph.invoke({"query": "q"}, CONFIG)
    out = graph.invoke(Command(resume="approve"), CONFIG)  # block 1 runs; block 2 waits
    assert _interrupts(out)
    [scratch] = tmp_path.glob("rlm-sandbox-*")
    assert _processes_in(scratch), "the paused run's sandbox is alive"
    deadline = time.monotonic() + 10
    while scratch.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not scratch.exists() and _processes_in(scratch) == []  # gone after the TTL
    out = graph.invoke(Command(resume="approve"), CONFIG)
    assert "Observation:\n42" in str(model.prompts[-1][-1].content)  # x is back (replay)
    assert out["answer"] == "done"


# ---- update_state on a paused thread routes from state (never next=() and answer '') -------


def _echo_model() -> FakeChatModel:
    """Runs print('orig'), then answers with the first line of what its code printed."""

    def respond(messages: list[BaseMessage]) -> str:
        if turn(messages) == 0:
            return code("print('orig')")
        seen = re.search(r"Observation:\n(.*)", last_text(messages))
        return final(seen.group(1).strip() if seen else "nothing")

    return FakeChatModel(respond=respond)


def test_update_state_of_the_pending_code_runs_it_and_tells_the_model() -> None:
    model = _echo_model()
    graph = build_graph(model=model, checkpointer=InMemorySaver())
    graph.invoke({"query": "q", "context": "c"}, CONFIG, interrupt_before=["execute"])
    graph.update_state(CONFIG, {"code_blocks": ["print('edited')"]})
    assert graph.get_state(CONFIG).next == ("execute",)
    out = graph.invoke(None, CONFIG)
    assert out["answer"] == "edited" and out["stopped_reason"] == "final_answer"
    told = last_text(model.prompts[-1])
    assert "your code was changed while the run was paused" in told and "print('edited')" in told


def test_update_state_with_approval_still_pauses_for_review() -> None:
    graph = build_graph(model=_echo_model(), checkpointer=InMemorySaver(), approve="code")
    out = graph.invoke({"query": "q", "context": "c"}, CONFIG)
    assert _interrupts(out)[0]["code"] == "print('orig')"
    graph.update_state(CONFIG, {"code_blocks": ["print('edited')"]})
    out = graph.invoke(None, CONFIG)
    assert _interrupts(out)[0]["code"] == "print('edited')"  # the edit is what is reviewed
    out = graph.invoke(Command(resume="approve"), CONFIG)
    assert out["answer"] == "edited"


def test_update_state_that_removes_the_code_continues_the_loop() -> None:
    model = _echo_model()
    graph = build_graph(model=model, checkpointer=InMemorySaver())
    graph.invoke({"query": "q", "context": "c"}, CONFIG, interrupt_before=["execute"])
    graph.update_state(CONFIG, {"code_blocks": []})
    assert graph.get_state(CONFIG).next == ("observe",)
    out = graph.invoke(None, CONFIG)
    assert out["answer"] and out["stopped_reason"] == "final_answer"


def test_update_state_before_think_continues_the_loop() -> None:
    graph = build_graph(model=_echo_model(), checkpointer=InMemorySaver())
    graph.invoke({"query": "q", "context": "c"}, CONFIG, interrupt_before=["think"])
    graph.invoke(None, CONFIG, interrupt_before=["think"])  # block ran; paused before turn 2
    graph.update_state(CONFIG, {"best_answer": "kept"})
    assert graph.get_state(CONFIG).next == ("think",)
    out = graph.invoke(None, CONFIG)
    assert out["answer"] == "orig" and out["stopped_reason"] == "final_answer"
