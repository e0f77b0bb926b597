"""Follow-up questions on a thread keep the REPL: in process (the parked sandbox) and across
a restart or the TTL (rebuilt from the thread's record), with the real sandbox."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import BaseMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.sqlite import SqliteSaver

from rlm_graph import build_graph, close_runs, followups, open_runs
from rlm_graph.nodes import Loop
from tests import followup_run
from tests.fakes import FakeChatModel, code, final, is_subcall, last_text, question, text_of, turn

ROOT = Path(__file__).resolve().parents[1]


def _printed(messages: list[BaseMessage]) -> str:
    m = re.search(r"Observation:\n(.*?)\n\n\(", last_text(messages), re.S)
    return m.group(1).strip() if m else "?"


SCRIPTS = {
    "Count the words.": "counts = len(context.split())\nprint(counts)",
    "Double the count.": "print(counts * 2, query)",
    "Words in both?": "print(len(context_0.split()) + len(context.split()), context is context_1)",
}


def _model() -> FakeChatModel:
    def respond(messages: list[BaseMessage]) -> str:
        src = SCRIPTS[question(messages)]
        return code(src) if turn(messages) == 0 else final(_printed(messages))

    return FakeChatModel(respond=respond)


def _loop(graph: Any) -> Loop:
    return graph.nodes["start"].bound.body.__self__  # type: ignore[no-any-return]


def test_follow_up_uses_a_variable_from_the_first_question() -> None:
    model = _model()
    graph = build_graph(model=model, checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "t1"}}
    try:
        first = graph.invoke({"query": "Count the words.", "context": "a b c"}, config)
        assert first["answer"] == "3"
        assert open_runs(graph) == [] and _loop(graph).follow_ups.sessions.ids() == ["t1"]
        second = graph.invoke({"query": "Double the count."}, config)
        assert second["answer"] == "6 Double the count."
        prompt = text_of(model.prompts[-1][1])
        assert "This is a follow-up question." in prompt
        assert "1. Q: Count the words.\n   A: 3" in prompt
        assert "still defined" in prompt and "still holds the data" in prompt
        third = graph.invoke({"query": "Words in both?", "context": "d e f g"}, config)
        assert third["answer"] == "7 True"
        assert "(It is also `context_1`.)" in text_of(model.prompts[-1][1])
        # Another thread starts fresh.
        other = graph.invoke({"query": "Double the count."}, {"configurable": {"thread_id": "t2"}})
        assert "name 'counts' is not defined" in other["answer"]
    finally:
        close_runs(graph)
    assert _loop(graph).follow_ups.sessions.ids() == []


def test_without_checkpointer_or_with_ttl_zero_each_question_starts_fresh() -> None:
    for kwargs in ({}, {"checkpointer": InMemorySaver(), "follow_up_ttl": 0}):
        graph = build_graph(model=_model(), **kwargs)
        config = {"configurable": {"thread_id": "t"}}
        graph.invoke({"query": "Count the words.", "context": "a b c"}, config)
        assert _loop(graph).follow_ups.sessions.ids() == []
        out = graph.invoke({"query": "Double the count."}, config)
        assert "name 'counts' is not defined" in out["answer"]


def test_parked_sandbox_expires_after_the_ttl() -> None:
    graph = build_graph(model=_model(), checkpointer=InMemorySaver(), follow_up_ttl=0.3)
    config = {"configurable": {"thread_id": "t"}}
    graph.invoke({"query": "Count the words.", "context": "a b c"}, config)
    session = _loop(graph).follow_ups.sessions._sessions["t"]
    time.sleep(0.8)
    assert _loop(graph).follow_ups.sessions.ids() == [] and session.executor.closed
    model = _model()
    graph2 = build_graph(model=model, checkpointer=InMemorySaver(), follow_up_ttl=0.3)
    graph2.invoke({"query": "Count the words.", "context": "a b c"}, config)
    time.sleep(0.8)
    out = graph2.invoke({"query": "Double the count."}, config)
    assert "name 'counts' is not defined" in out["answer"]
    assert "variables from those questions are lost" in text_of(model.prompts[-1][1])
    close_runs(graph2)


def test_a_follow_up_sandbox_serves_the_new_run() -> None:
    """The parked sandbox's host functions are re-bound: the follow-up's sub-calls count in
    its own usage and events, and its tool calls run for it."""
    from langchain_core.tools import tool

    @tool
    def shout(text: str) -> str:
        """Upper-case a text."""
        return text.upper()

    scripts = {
        "Count the words.": "counts = len(context.split())\nprint(counts)",
        "Ask about it.": "print(llm_query(f'is {counts} many?'), shout('ok'))",
    }

    def respond(messages: list[BaseMessage]) -> str:
        if not messages or not hasattr(messages[0], "type") or messages[0].type != "system":
            return "few"
        src = scripts[question(messages)]
        return code(src) if turn(messages) == 0 else final(_printed(messages))

    graph = build_graph(
        model=FakeChatModel(respond=respond), tools=[shout], checkpointer=InMemorySaver()
    )
    config = {"configurable": {"thread_id": "t"}}
    try:
        graph.invoke({"query": "Count the words.", "context": "a b c"}, config)
        evs, out = [], {}
        for mode, chunk in graph.stream(
            {"query": "Ask about it."}, config, stream_mode=["custom", "values"]
        ):
            if mode == "custom":
                evs.append(chunk)
            else:
                out = chunk
        assert out["answer"] == "few OK"
        assert out["usage"]["llm_calls"] == 3  # two root calls and the sub-call
        run_id = next(e["run_id"] for e in evs if e["event"] == "run_start")
        calls = [e for e in evs if e["event"] == "subcall_end"]
        assert [c["function"] for c in calls] == ["llm_query", "shout"]
        assert {c["run_id"] for c in calls} == {run_id}
    finally:
        close_runs(graph)


# ---- across a restart: the thread's REPL rebuilt from its record ----------------------------


def _sqlite_graph(db: Path, model: FakeChatModel, **settings: Any) -> Any:
    saver = SqliteSaver(sqlite3.connect(db, check_same_thread=False))
    return build_graph(model=model, checkpointer=saver, **settings)


def _ask(db: Path, model: FakeChatModel, inp: dict[str, Any], **settings: Any) -> Any:
    """One question on thread "t" with a new graph object (no parked sandbox), closed after."""
    graph = _sqlite_graph(db, model, **settings)
    try:
        return graph.invoke(inp, {"configurable": {"thread_id": "t"}})
    finally:
        close_runs(graph)


def _calls(model: FakeChatModel) -> list[str]:
    return ["sub" if is_subcall(p) else "root" for p in model.prompts]


def test_a_kept_sandbox_takes_a_new_context_file_from_the_store(tmp_path: Path) -> None:
    first, second = tmp_path / "a.txt", tmp_path / "b.txt"
    first.write_text("a b c")
    second.write_text("d e f g")
    model = _model()
    graph = _sqlite_graph(tmp_path / "c.db", model)
    config = {"configurable": {"thread_id": "t"}}
    try:
        out = graph.invoke({"query": "Count the words.", "context_file": str(first)}, config)
        assert out["answer"] == "3" and _loop(graph).follow_ups.sessions.ids() == ["t"]
        # The parked sandbox gets the new file's text as context_1, read from the store.
        out = graph.invoke({"query": "Words in both?", "context_file": str(second)}, config)
        assert out["answer"] == "7 True"
        prompt = text_of(model.prompts[-1][1])
        assert "(It is also `context_1`.)" in prompt and "'d e f g'" in prompt
    finally:
        close_runs(graph)


def test_follow_up_in_a_new_graph_rebuilds_the_repl_without_model_calls(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    first = followup_run.model(sub="forty")
    out = _ask(db, first, {"query": "Count the words.", "context": "a b c"})
    assert out["answer"] == "3" and _calls(first) == ["root", "sub", "root"]
    later = followup_run.model(sub="WRONG")  # a sub-call asked again would answer this
    out = _ask(db, later, {"query": "Double the count."})
    assert out["answer"] == "6 forty Double the count."  # `w` came from the record
    assert _calls(later) == ["root", "root"]  # the replay made no model call
    assert out["usage"]["llm_calls"] == 2
    prompt = text_of(later.prompts[0][1])
    assert "1. Q: Count the words.\n   A: 3" in prompt
    assert "variables from those questions are kept" in prompt and "lost" not in prompt
    assert "printed something different" not in text_of(later.prompts[1][-1])
    # A new context after another restart: context_1 (and context_0, the first one).
    third = followup_run.model(sub="WRONG")
    out = _ask(db, third, {"query": "Words in both?", "context": "d e f g"})
    assert out["answer"] == "7 True" and _calls(third) == ["root", "root"]
    assert "(It is also `context_1`.)" in text_of(third.prompts[0][1])
    fourth = followup_run.model(sub="WRONG")
    out = _ask(db, fourth, {"query": "Which contexts?"})
    assert out["answer"] == "a b c | d e f g | d e f g | 3"
    assert _calls(fourth) == ["root", "root"]


def test_the_record_keeps_outputs_as_digests_and_not_the_journal_twice(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    marker = "OUTPUT-MARKER-91c2"
    scripts = {"Shout.": f"big = {marker!r} * 50\nprint(big)", "Again?": "print(len(big))"}
    out = _ask(db, followup_run.model(scripts=scripts), {"query": "Shout."})
    assert marker in out["answer"]
    graph = _sqlite_graph(db, followup_run.model(scripts=scripts))
    values = graph.get_state({"configurable": {"thread_id": "t"}}).values
    record = values["thread_record"]
    assert [q["query"] for q in record["questions"]] == ["Shout."]
    entry = record["questions"][0]["journal"][0]
    assert entry["output"] == "" and len(entry["output_hash"]) == 32
    assert marker * 2 not in json.dumps(record) and values["journal"] == []
    assert values["thread_question"] is None
    later = followup_run.model(scripts=scripts)
    assert _ask(db, later, {"query": "Again?"})["answer"] == str(len(marker) * 50)


def test_a_replayed_block_that_prints_something_else_is_named_once(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    scripts = {
        "Roll.": "import random\nx = 7\nprint(random.random())",
        "Use it.": "print(x * 6)",
        "Once more.": "print(x + 1)",
    }
    _ask(db, followup_run.model(scripts=scripts), {"query": "Roll."})
    later = followup_run.model(scripts=scripts)
    assert _ask(db, later, {"query": "Use it."})["answer"] == "42"
    observation = text_of(later.prompts[1][-1])
    assert "this thread's REPL was rebuilt" in observation
    assert "the earlier question 'Roll.', iteration 1, block 1" in observation
    assert "Use it." not in observation.split("Observation:")[0]  # only the diverged block
    parked = followup_run.model(scripts=scripts)
    graph = _sqlite_graph(db, parked)
    config = {"configurable": {"thread_id": "t"}}
    try:  # the same graph again: its parked sandbox, no replay, nothing to tell
        graph.invoke({"query": "Use it."}, config)
        graph.invoke({"query": "Once more."}, config)
    finally:
        close_runs(graph)
    assert "printed something different" not in text_of(parked.prompts[-1][-1])


def test_past_the_ttl_the_same_process_rebuilds_the_repl(tmp_path: Path) -> None:
    model = followup_run.model(sub="forty")
    graph = _sqlite_graph(tmp_path / "c.db", model, follow_up_ttl=0.3)
    config = {"configurable": {"thread_id": "t"}}
    try:
        graph.invoke({"query": "Count the words.", "context": "a b c"}, config)
        session = _loop(graph).follow_ups.sessions._sessions["t"]
        time.sleep(0.8)
        assert _loop(graph).follow_ups.sessions.ids() == [] and session.executor.closed
        before = len(model.prompts)
        out = graph.invoke({"query": "Double the count."}, config)
        assert out["answer"] == "6 forty Double the count."
        assert len(model.prompts) - before == 2  # the two root turns, no sub-call again
        assert "variables from those questions are kept" in text_of(model.prompts[before][1])
    finally:
        close_runs(graph)


def test_past_the_record_cap_later_questions_are_not_rebuilt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "c.db"
    monkeypatch.setattr(followups, "MAX_RECORD_QUESTIONS", 1)
    scripts = {
        "Count the words.": "counts = len(context.split())\nprint(counts)",
        "Set more.": "more = counts + 1\nprint(more)",
        "Show both.": "print(counts, 'more' in globals())",
    }
    _ask(db, followup_run.model(scripts=scripts), {"query": "Count the words.", "context": "a b"})
    _ask(db, followup_run.model(scripts=scripts), {"query": "Set more."})
    last = followup_run.model(scripts=scripts)
    assert _ask(db, last, {"query": "Show both."})["answer"] == "2 False"
    prompt = text_of(last.prompts[0][1])
    assert "Only the first 1 questions of this thread are recorded" in prompt


def test_without_a_store_the_variables_are_lost_after_the_ttl(tmp_path: Path) -> None:
    """InMemorySaver has no store beside it: the earlier payloads are gone with their run."""
    model = followup_run.model()
    graph = build_graph(model=model, checkpointer=InMemorySaver(), follow_up_ttl=0.2)
    config = {"configurable": {"thread_id": "t"}}
    graph.invoke({"query": "Count the words.", "context": "a b c"}, config)
    time.sleep(0.6)
    out = graph.invoke({"query": "Double the count."}, config)
    assert "name 'counts' is not defined" in out["answer"]
    assert "variables from those questions are lost" in text_of(model.prompts[-2][1])
    close_runs(graph)


def _in_process(db: Path, log: Path, query: str, *extra: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "tests.followup_run", str(db), "t", str(log), query, *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.splitlines()[-1])  # type: ignore[no-any-return]


def test_follow_up_in_a_new_process(tmp_path: Path) -> None:
    db, log = tmp_path / "c.db", tmp_path / "calls.log"
    out = _in_process(db, log, "Count the words.", "--context", "a b c", "--sub", "forty")
    assert out["answer"] == "3"
    assert log.read_text().split() == ["root", "sub", "root"]
    out = _in_process(db, log, "Double the count.", "--sub", "WRONG")
    assert out["answer"] == "6 forty Double the count."
    assert log.read_text().split() == ["root", "sub", "root", "root", "root"]
    assert "variables from those questions are kept" in out["prompt"]
    out = _in_process(db, log, "Words in both?", "--context", "d e f g")
    assert out["answer"] == "7 True" and "`context_1`" in out["prompt"]


def test_a_follow_up_paused_and_resumed_in_a_new_graph_replays_the_thread(tmp_path: Path) -> None:
    """A follow-up resumed mid-run elsewhere: the thread's earlier questions, then its own
    blocks; at its end it joins the record, so the next question sees its variables."""
    db = tmp_path / "c.db"
    steps = {
        "Count the words.": ["counts = len(context.split())\nprint(counts)"],
        "Two steps.": ["y = counts * 10\nprint(y)", "z = y + len(context_1)\nprint(z)"],
        "All of it?": ["print(counts, y, z)"],
    }

    def respond(messages: list[BaseMessage]) -> str:
        script = steps[question(messages)]
        n = turn(messages)
        return code(script[n]) if n < len(script) else final(_printed(messages))

    _ask(db, FakeChatModel(respond=respond), {"query": "Count the words.", "context": "a b c"})
    config: Any = {"configurable": {"thread_id": "t"}}
    paused = _sqlite_graph(db, FakeChatModel(respond=respond))
    try:
        inp = {"query": "Two steps.", "context": "xy"}
        paused.invoke(inp, config, interrupt_before=["execute"])
        paused.invoke(None, config, interrupt_before=["execute"])  # block 1 ran
    finally:
        close_runs(paused)
    resumed = FakeChatModel(respond=respond)
    out = _sqlite_graph(db, resumed).invoke(None, config)
    assert out["answer"] == "32" and resumed.calls == 1  # only the final turn
    last = FakeChatModel(respond=respond)
    assert _ask(db, last, {"query": "All of it?"})["answer"] == "3 30 32"
    assert last.calls == 2
