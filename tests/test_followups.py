"""Follow-up questions on a thread keep the REPL (in process), with the real sandbox."""

from __future__ import annotations

import re
import time
from typing import Any

from langchain_core.messages import BaseMessage
from langgraph.checkpoint.memory import InMemorySaver

from rlm_graph import build_graph, close_runs, open_runs
from rlm_graph.nodes import Loop
from tests.fakes import FakeChatModel, code, final, last_text, question, text_of, turn


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
