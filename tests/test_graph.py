"""The RLM loop end to end with the real sandbox and scripted fake models (offline)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage

from rlm_graph import build_graph as _build_graph
from rlm_graph import close_runs, open_runs, prompts
from rlm_graph.inputs import InputError
from tests.fakes import (
    FakeChatModel,
    answer_model,
    code,
    depth,
    final,
    instant_model,
    is_subcall,
    last_text,
    recursive_model,
    scripted,
    text_of,
    turn,
)


def events(graph: Any, inp: dict[str, Any], **kwargs: Any) -> tuple[list[Any], list[dict]]:
    """Stream custom events with subgraphs; return (namespaces, events)."""
    spaces, evs = [], []
    for ns, ev in graph.stream(inp, stream_mode="custom", subgraphs=True, **kwargs):
        spaces.append(ns)
        evs.append(ev)
    return spaces, evs


_GRAPHS: list[Any] = []


def build_graph(*args: Any, **kwargs: Any) -> Any:
    """rlm_graph.build_graph, remembering the graph so the leak check can look at its runs."""
    graph = _build_graph(*args, **kwargs)
    _GRAPHS.append(graph)
    return graph


@pytest.fixture(autouse=True)
def _no_leaks() -> Any:
    yield
    graphs = list(_GRAPHS)
    _GRAPHS.clear()
    for graph in graphs:
        # A run's live objects are its sandbox and, at the root, its tree's budget.
        assert open_runs(graph) == [], "a run's live objects (sandbox, budget) were not closed"


def test_code_then_answer() -> None:
    model = answer_model()
    out = build_graph(model=model).invoke({"query": "How long?", "context": "abcdef"})
    assert out["answer"] == "6"
    assert out["stopped_reason"] == "final_answer"
    assert out["iterations"] == 2
    assert out["usage"]["llm_calls"] == 2 == model.calls
    assert out["usage"]["total_tokens"] == model.tokens["total_tokens"] > 0


def test_query_alone_becomes_context() -> None:
    out = build_graph(model=answer_model()).invoke({"query": "seven!"})
    assert out["answer"] == "6"


def test_recursion_three_levels_with_context_chunks() -> None:
    """depth 0 splits a list across children, depth 1 halves its text, depth 2 measures."""

    def respond(messages: list[BaseMessage]) -> str:
        d = depth(messages)
        if turn(messages) > 0:
            return final("unused")
        if d == 0:
            return code(
                "final_answer(sum(int(a) for a in rlm_query_batched([('n', c) for c in context])))"
            )
        if d == 1:
            return code(
                "h = len(context) // 2\n"
                "final_answer(int(rlm_query('n', context=context[:h])) + "
                "int(rlm_query('n', context=context[h:])))"
            )
        return code("final_answer(len(context))")

    model = FakeChatModel(respond=respond)
    graph = build_graph(model=model, max_depth=2)
    chunks = ["a" * 100, "b" * 250, "c" * 7]
    spaces, evs = events(graph, {"query": "total length?", "context": chunks})
    out_ev = next(e for e in evs if e["event"] == "final" and e["depth"] == 0)
    assert out_ev["answer"] == str(357)
    starts = [e for e in evs if e["event"] == "run_start"]
    assert sorted(e["depth"] for e in starts) == [0] + [1] * 3 + [2] * 6
    # The depth-2 runs were told rlm_query is only a plain call there.
    deepest = [p for p in model.prompts if depth(p) == 2]
    assert deepest and all("maximum depth" in text_of(p[0]) for p in deepest)
    # Every child's parent_run_id is the run one level up.
    by_id = {e["run_id"]: e for e in starts}
    for e in starts:
        if e["depth"]:
            assert by_id[e["parent_run_id"]]["depth"] == e["depth"] - 1
    assert any(len(ns) >= 2 for ns in spaces), "grandchild events should be nested twice"


def test_children_cannot_see_parent_variables_or_messages() -> None:
    def respond(messages: list[BaseMessage]) -> str:
        if depth(messages) == 0:
            if turn(messages) == 0:
                return code("secret = 'XYZZY'\nprint(rlm_query('look around', context='c'))")
            return final(re.search(r"Observation:\n(.*)", last_text(messages)).group(1))  # type: ignore[union-attr]
        if turn(messages) == 0:
            return code("print('secret' in globals(), repr(context), query)")
        return final(last_text(messages).splitlines()[1])

    model = FakeChatModel(respond=respond)
    out = build_graph(model=model).invoke({"query": "ROOT-QUESTION-123", "context": "big"})
    assert out["answer"] == "False 'c' look around"
    child_prompts = [p for p in model.prompts if depth(p) == 1]
    assert child_prompts
    for prompt in child_prompts:
        joined = "\n".join(text_of(m) for m in prompt)
        assert "ROOT-QUESTION-123" not in joined
        assert "XYZZY" not in joined


def test_max_depth_fallback_is_a_plain_call() -> None:
    def respond(messages: list[BaseMessage]) -> str:
        if is_subcall(messages):
            return "plain:" + text_of(messages[-1]).replace("\n", "|")
        if turn(messages) == 0:
            return code("final_answer(rlm_query('what is it?', context='DATA'))")
        return final("unused")

    model = FakeChatModel(respond=respond)
    _, evs = events(build_graph(model=model, max_depth=0), {"query": "q", "context": "x"})
    final_ev = next(e for e in evs if e["event"] == "final")
    assert final_ev["answer"] == "plain:what is it?||Context:|DATA"
    assert [e["depth"] for e in evs if e["event"] == "run_start"] == [0]
    assert "maximum depth" in text_of(model.prompts[0][0])
    starts = [e for e in evs if e["event"] == "subcall_start"]
    assert [(e["kind"], e["function"]) for e in starts] == [("llm", "rlm_query")]
    ends = [e for e in evs if e["event"] == "subcall_end"]
    assert [(e["kind"], e["function"]) for e in ends] == [("llm", "rlm_query")]


def test_batched_children_run_concurrently() -> None:
    latency = 0.25

    def respond(messages: list[BaseMessage]) -> str:
        if depth(messages) == 0:
            if turn(messages) == 0:
                return code("print(rlm_query_batched([('n', str(i)) for i in range(4)]))")
            return final("done")
        return code("final_answer(context)") if turn(messages) == 0 else final("unused")

    model = FakeChatModel(respond=respond, latency=latency)
    _, evs = events(build_graph(model=model, max_concurrency=8), {"query": "q", "context": "x"})
    ends = [e for e in evs if e["event"] == "subcall_end" and e["depth"] == 0]
    assert len(ends) == 4 and not any(e["error"] for e in ends)
    batch = next(e for e in evs if e["event"] == "observation" and e["depth"] == 0)
    assert "['0', '1', '2', '3']" in batch["output"]
    sequential = sum(e["seconds"] for e in ends)
    assert batch["seconds"] < 0.6 * sequential, (batch["seconds"], sequential)
    assert model.max_in_flight >= 2


def test_max_iterations_forces_an_answer() -> None:
    def respond(messages: list[BaseMessage]) -> str:
        if "used all your replies" in last_text(messages):
            return final("best guess")
        return code("print(1)")

    model = FakeChatModel(respond=respond)
    out = build_graph(model=model, max_iterations=2).invoke({"query": "q"})
    assert out["answer"] == "best guess"
    assert out["stopped_reason"] == "max_iterations"
    assert out["iterations"] == 2
    assert model.calls == 3 == out["usage"]["llm_calls"]


def test_forced_answer_never_empty() -> None:
    model = FakeChatModel(respond=lambda m: "" if turn(m) else code("print(5)"))
    out = build_graph(model=model, max_iterations=1).invoke({"query": "q"})
    assert out["answer"].strip()
    assert out["stopped_reason"] == "max_iterations"


def test_code_plus_final_answer_is_not_accepted() -> None:
    def respond(messages: list[BaseMessage]) -> str:
        if turn(messages) == 0:
            return code("print(7)") + "\nFinal Answer: 99"
        return final(re.search(r"Observation:\n(\d+)", last_text(messages)).group(1))  # type: ignore[union-attr]

    model = FakeChatModel(respond=respond)
    out = build_graph(model=model).invoke({"query": "q"})
    assert out["answer"] == "7"
    assert out["iterations"] == 2
    assert "not accepted" in text_of(model.prompts[1][-1])
    # The guessed answer is gone from the history, so the model cannot simply repeat it.
    history = model.prompts[1][-2]
    assert isinstance(history, AIMessage) and "print(7)" in text_of(history)
    assert "99" not in text_of(history) and "Final Answer" not in text_of(history)


def test_the_history_holds_a_reply_as_the_loop_used_it() -> None:
    # Text after the code is the model's guess at the output, or the loop's feedback copied
    # from the last observation: kept, a small model reads it back as fact and copies it on.
    tail = "\nAfter running this, we find 12 lines.\n\nYour Final Answer was not accepted."
    model = FakeChatModel(respond=scripted(code("print(7)") + tail, final("7")))
    out = build_graph(model=model).invoke({"query": "q"})
    assert out["answer"] == "7"
    history = model.prompts[1][-2]
    assert isinstance(history, AIMessage)
    assert text_of(history) == code("print(7)").rstrip()
    assert "we find" not in "".join(text_of(m) for m in model.prompts[1])


def test_repeated_code_is_pointed_out() -> None:
    model = FakeChatModel(
        respond=scripted(
            code("x = 1\nprint(x)"),
            code("x = 1\nprint(x)", "check again"),
            code("print(x + 1)"),
            final("2"),
        )
    )
    out = build_graph(model=model).invoke({"query": "q"})
    assert out["answer"] == "2"
    observations = [text_of(model.prompts[n][-1]) for n in (1, 2, 3)]
    assert [prompts.REPEATED_CODE in o for o in observations] == [False, True, False]
    assert observations[1].startswith("Observation:\n1")  # the code still ran


def test_final_answer_inside_try_except_and_later_blocks_skipped() -> None:
    reply = (
        code("try:\n    final_answer('from code')\nexcept Exception:\n    print('swallowed')")
        + "\n"
        + code("print('second block ran')")
    )
    model = FakeChatModel(respond=scripted(reply, final("too late")))
    _, evs = events(build_graph(model=model), {"query": "q"})
    final_ev = next(e for e in evs if e["event"] == "final")
    assert final_ev["answer"] == "from code"
    assert final_ev["stopped_reason"] == "final_answer"
    assert final_ev["iterations"] == 1
    assert [e["index"] for e in evs if e["event"] == "code"] == [0]
    assert model.calls == 1


def test_reply_with_neither_gets_a_correction() -> None:
    model = FakeChatModel(respond=scripted("I wonder.", final("ok")))
    out = build_graph(model=model).invoke({"query": "q"})
    assert out["answer"] == "ok"
    assert out["iterations"] == 2
    assert "neither" in text_of(model.prompts[1][-1])


def test_empty_output_gets_a_print_hint() -> None:
    model = FakeChatModel(respond=scripted(code("x = 1"), final("ok")))
    build_graph(model=model).invoke({"query": "q"})
    assert "print()" in text_of(model.prompts[1][-1])


def test_block_errors_are_observed() -> None:
    model = FakeChatModel(respond=scripted(code("1/0"), final("ok")))
    build_graph(model=model).invoke({"query": "q"})
    assert "ZeroDivisionError" in text_of(model.prompts[1][-1])


def test_call_budget_exact_with_64_concurrent_calls() -> None:
    def respond(messages: list[BaseMessage]) -> str:
        if is_subcall(messages):
            return "fine"
        return code(
            "r = llm_query_batched(['p'] * 64)\n"
            "print(sum(a == 'fine' for a in r), sum('budget exhausted' in a for a in r))"
        )

    model = FakeChatModel(respond=respond, latency=0.05)
    graph = build_graph(model=model, max_llm_calls=10, max_concurrency=64)
    out = graph.invoke({"query": "q"})
    assert model.calls == 10
    assert out["usage"]["llm_calls"] == 10
    assert out["stopped_reason"] == "budget"
    assert out["answer"] == "9 55"  # best answer: the last output seen
    assert model.max_in_flight > 8


def test_budget_shared_with_children() -> None:
    def respond(messages: list[BaseMessage]) -> str:
        if is_subcall(messages):
            return "fine"
        if depth(messages) == 0:
            return code("print(rlm_query_batched(['a', 'b', 'c', 'd']))")
        return code("print(llm_query_batched(['p'] * 8))")

    model = FakeChatModel(respond=respond)
    out = build_graph(model=model, max_llm_calls=12, max_concurrency=16).invoke({"query": "q"})
    assert model.calls == 12 == out["usage"]["llm_calls"]
    assert out["stopped_reason"] == "budget"
    assert out["answer"].strip()


def test_token_budget_stops_new_calls() -> None:
    model = FakeChatModel(respond=lambda m: code("print(1)"))
    out = build_graph(model=model, max_total_tokens=1).invoke({"query": "q"})
    assert model.calls == 1
    assert out["stopped_reason"] == "budget"


def test_deadline_stops_the_tree() -> None:
    model = FakeChatModel(respond=lambda m: code("print(1)"), latency=0.1)
    out = build_graph(model=model, max_seconds=0.25).invoke({"query": "q"})
    assert out["stopped_reason"] == "budget"
    assert 1 <= model.calls < 20  # far fewer than max_iterations: the deadline cut it short


def test_deadline_bounds_a_running_block() -> None:
    import time

    model = FakeChatModel(respond=scripted(code("while True:\n    pass"), final("x")))
    began = time.monotonic()
    out = build_graph(model=model, max_seconds=1.5).invoke({"query": "q"})
    assert time.monotonic() - began < 20  # exec_timeout is 60 s: the deadline cut the block
    assert out["stopped_reason"] == "budget"
    assert model.calls == 1


def test_usage_totals_across_the_tree() -> None:
    def respond(messages: list[BaseMessage]) -> str:
        if is_subcall(messages):
            return "sub answer"
        if turn(messages) > 0:
            return final("done")
        if depth(messages) == 0:
            return code("print(llm_query('x'), rlm_query_batched(['a', 'b']))")
        return code("print(llm_query('y'))")

    model = FakeChatModel(respond=respond)
    _, evs = events(build_graph(model=model), {"query": "q"})
    root_end = next(e for e in evs if e["event"] == "run_end" and e["depth"] == 0)
    # root 2 turns + 1 llm_query; each child 2 turns + 1 llm_query
    assert root_end["usage"]["llm_calls"] == model.calls == 3 + 2 * 3
    assert root_end["usage"]["total_tokens"] == model.tokens["total_tokens"]
    assert root_end["usage"]["input_tokens"] == model.tokens["input_tokens"]
    child_ends = [e for e in evs if e["event"] == "run_end" and e["depth"] == 1]
    assert [e["usage"]["llm_calls"] for e in child_ends] == [3, 3]


def test_calls_counted_when_provider_omits_usage() -> None:
    model = FakeChatModel(respond=answer_model().respond, report_usage=False)
    out = build_graph(model=model).invoke({"query": "q"})
    assert out["usage"] == {
        "input_tokens": 0,
        "output_tokens": 0,
        "total_tokens": 0,
        "llm_calls": 2,
    }


async def test_ainvoke_and_astream() -> None:
    graph = build_graph(model=recursive_model())
    out = await graph.ainvoke({"query": "q", "context": "x" * 50})
    assert out["answer"] == "child saw 50 chars"
    seen = []
    async for ns, ev in graph.astream(
        {"query": "q", "context": "y" * 9}, stream_mode="custom", subgraphs=True
    ):
        seen.append((ns, ev))
    finals = [ev for _, ev in seen if ev["event"] == "final"]
    assert [f["depth"] for f in finals] == [1, 0]
    assert finals[-1]["answer"] == "child saw 9 chars"
    assert any(ns for ns, ev in seen if ev["depth"] == 1)


def test_nested_stream_namespaces_and_event_shapes() -> None:
    spaces, evs = events(build_graph(model=recursive_model()), {"query": "q", "context": "abc"})
    from rlm_graph.events import EVENT_TYPES

    # The documented shapes (docs/ARCHITECTURE.md) as declared in rlm_graph.events.
    assert set(EVENT_TYPES["observation"].__required_keys__) >= {"output_chars", "timed_out"}
    for ev in evs:
        assert set(ev) == set(EVENT_TYPES[ev["event"]].__required_keys__), ev
    # compaction needs a long run, dead_end a failed search: their shapes are checked in
    # tests/test_compaction.py and tests/test_dead_ends.py.
    assert {e["event"] for e in evs} == set(EVENT_TYPES) - {"compaction", "dead_end"}
    root = next(e for e in evs if e["event"] == "run_start" and e["depth"] == 0)
    child = next(e for e in evs if e["event"] == "run_start" and e["depth"] == 1)
    assert root["parent_run_id"] is None and child["parent_run_id"] == root["run_id"]
    end = next(e for e in evs if e["event"] == "subcall_end")
    assert end["child_run_id"] == child["run_id"] and end["kind"] == "rlm"
    for ns, ev in zip(spaces, evs, strict=True):
        assert (len(ns) > 0) == (ev["depth"] == 1)
    ts = [e["t"] for e in evs]
    assert ts == sorted(ts)


def test_graph_as_a_node_of_a_parent_graph() -> None:
    from langgraph.graph import END, START, StateGraph
    from typing_extensions import TypedDict

    class Outer(TypedDict, total=False):
        query: str
        context: str
        answer: str
        shouted: str

    def shout(state: Outer) -> dict[str, str]:
        return {"shouted": state["answer"].upper()}

    outer = StateGraph(Outer)
    outer.add_node("rlm", build_graph(model=recursive_model()))
    outer.add_node("shout", shout)
    outer.add_edge(START, "rlm")
    outer.add_edge("rlm", "shout")
    outer.add_edge("shout", END)
    out = outer.compile().invoke({"query": "q", "context": "abcd"})
    assert out["shouted"] == "CHILD SAW 4 CHARS"


@pytest.mark.parametrize(
    ("inp", "fragment"),
    [
        ({}, "missing 'query'"),
        ({"query": ""}, "'query' is empty"),
        ({"query": "   "}, "'query' is empty"),
        ({"query": 42}, "'query' must be a string"),
        ({"query": "q", "context": object()}, "unsupported 'context' type object"),
        ({"query": "q", "context": ["ok", {1, 2}]}, "unsupported 'context' type set"),
        ({"query": "q", "context": b"bytes"}, "unsupported 'context' type bytes"),
    ],
)
def test_bad_input_fails_before_any_model_call(inp: dict[str, Any], fragment: str) -> None:
    model = instant_model()
    with pytest.raises(InputError, match=re.escape(fragment)) as info:
        build_graph(model=model).invoke(inp)
    assert isinstance(info.value, ValueError)
    assert "\n" not in str(info.value)
    assert model.calls == 0


def test_bad_settings_fail_early() -> None:
    with pytest.raises(ValueError, match="max_iterations"):
        build_graph(model=instant_model(), max_iterations=0)
    model = instant_model()
    with pytest.raises(ValueError, match="max_depth"):
        build_graph(model=model).invoke({"query": "q"}, context={"max_depth": -1})
    assert model.calls == 0


def test_provider_spec_errors_before_any_call(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="groq, ollama, openai, gemini"):
        build_graph(model="nosuch/model").invoke({"query": "q"})
    monkeypatch.delenv("GROQ_API_KEY", raising=False)
    with pytest.raises(ValueError, match="GROQ_API_KEY"):
        build_graph(model="groq/llama-3.3-70b-versatile").invoke({"query": "q"})
    # A per-run spec overrides the build_graph instance and is checked the same way.
    model = instant_model()
    with pytest.raises(ValueError, match="nosuch"):
        build_graph(model=model).invoke({"query": "q"}, context={"sub_model": "nosuch/x"})
    assert model.calls == 0


def test_strict_sandbox_unavailable_fails_before_any_call(monkeypatch: pytest.MonkeyPatch) -> None:
    from rlm_graph.sandbox import SandboxError, strict

    def unavailable() -> None:
        raise SandboxError("strict sandbox unavailable: test says no")

    monkeypatch.setattr(strict, "check_available", unavailable)
    model = instant_model()
    with pytest.raises(SandboxError, match="test says no"):
        build_graph(model=model).invoke({"query": "q"}, context={"sandbox": "strict"})
    assert model.calls == 0


def test_per_run_context_overrides_build_defaults() -> None:
    model = FakeChatModel(
        respond=lambda m: final("forced") if "used all" in last_text(m) else code("print(1)")
    )
    graph = build_graph(model=model, max_iterations=5)
    out = graph.invoke({"query": "q"}, context={"max_iterations": 1})
    assert out["iterations"] == 1 and out["answer"] == "forced"
    out = graph.invoke({"query": "q"})
    assert out["iterations"] == 5


def test_context_schema_describes_every_field() -> None:
    import dataclasses

    from rlm_graph import Context

    graph = build_graph(model=instant_model(), max_depth=3)
    schema = graph.builder.context_schema
    assert schema is not None and issubclass(schema, Context)
    fields = dataclasses.fields(schema)
    assert {f.name for f in fields} >= {"model", "max_depth", "max_llm_calls", "sandbox"}
    assert all(f.metadata.get("description") for f in fields)
    assert schema().max_depth == 3


def test_root_prompt_has_metadata_only_and_constant_size() -> None:
    sizes = []
    for n in (1_000, 2_000_000):
        model = instant_model()
        payload = "MARKER-" + "z" * (n - 15) + "-TAILEND"
        build_graph(model=model).invoke({"query": "q", "context": payload})
        prompt = "\n".join(text_of(m) for m in model.prompts[0])
        assert "TAILEND" not in prompt
        assert f"{n:,}" in prompt
        sizes.append(len(prompt))
    assert abs(sizes[0] - sizes[1]) / sizes[0] < 0.02


def test_list_payload_metadata_summarised() -> None:
    model = instant_model()
    chunks = [f"chunk {i} " * (i + 1) for i in range(500)]
    build_graph(model=model).invoke({"query": "q", "context": chunks})
    prompt = text_of(model.prompts[0][1])
    assert "list[str]" in prompt and "chunks: 500" in prompt and "median" in prompt
    assert len(prompt) < 2_000


def test_long_query_is_summarised_and_available_in_repl() -> None:
    long_query = "Please answer carefully. " * 400
    model = FakeChatModel(respond=scripted(code("print(len(query))"), final("ok")))
    build_graph(model=model).invoke({"query": long_query, "context": "c"})
    first = text_of(model.prompts[0][1])
    assert long_query not in first and f"{len(long_query):,} chars" in first
    assert str(len(long_query)) in text_of(model.prompts[1][-1])


@pytest.mark.parametrize("in_child", [False, True], ids=["root", "child"])
def test_interrupts_pass_through_and_resume(in_child: bool) -> None:
    """interrupt() in an llm_query of the root or of a child run pauses the whole tree."""
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.types import Command, interrupt

    def respond(messages: list[BaseMessage]) -> str:
        if is_subcall(messages):
            return "approved:" + str(interrupt("may I?"))
        delegate = in_child and depth(messages) == 0
        if turn(messages) == 0:
            return code(
                "print(rlm_query('child task', context='c'))"
                if delegate
                else "print(llm_query('ask'))"
            )
        return final(last_text(messages).splitlines()[1])

    graph = build_graph(model=FakeChatModel(respond=respond), checkpointer=InMemorySaver())
    config: Any = {"configurable": {"thread_id": f"interrupt-{in_child}"}}
    first = graph.invoke({"query": "q"}, config)
    assert first["__interrupt__"][0].value == "may I?"
    out = graph.invoke(Command(resume="yes"), config)
    assert out["answer"] == "approved:yes"


def test_resume_without_live_objects_reopens_the_run() -> None:
    """As if resumed in another process: no sandbox or budget in memory, only the checkpoint."""
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.types import Command, interrupt

    def respond(messages: list[BaseMessage]) -> str:
        if is_subcall(messages):
            return "approved:" + str(interrupt("may I?"))
        if turn(messages) == 0:
            return code("print(llm_query('ask'))")
        return final(last_text(messages).splitlines()[1])

    graph = build_graph(model=FakeChatModel(respond=respond), checkpointer=InMemorySaver())
    config: Any = {"configurable": {"thread_id": "moved"}}
    assert "__interrupt__" in graph.invoke({"query": "q"}, config)
    close_runs(graph)
    out = graph.invoke(Command(resume="yes"), config)
    assert out["answer"] == "approved:yes"
    assert out["usage"]["llm_calls"] == 3


def test_checkpointer_with_concurrent_children() -> None:
    from langgraph.checkpoint.memory import InMemorySaver

    def respond(messages: list[BaseMessage]) -> str:
        if depth(messages) == 0:
            if turn(messages) == 0:
                return code("final_answer('|'.join(rlm_query_batched([('n', c) for c in 'abc'])))")
            return final("unused")
        return code("final_answer(context * 2)")

    graph = build_graph(model=FakeChatModel(respond=respond), checkpointer=InMemorySaver())
    out = graph.invoke({"query": "q"}, {"configurable": {"thread_id": "t2"}})
    assert out["answer"] == "aa|bb|cc"
    state = graph.get_state({"configurable": {"thread_id": "t2"}})
    assert state.values["answer"] == "aa|bb|cc"


def test_second_run_on_a_thread_starts_fresh() -> None:
    """With follow-ups off (tests/test_followups.py has them on)."""
    from langgraph.checkpoint.memory import InMemorySaver

    model = answer_model()
    graph = build_graph(model=model, checkpointer=InMemorySaver(), follow_up_ttl=0)
    config: Any = {"configurable": {"thread_id": "t3"}}
    first = graph.invoke({"query": "q", "context": "abc"}, config)
    assert first["answer"] == "3"
    out = graph.invoke({"query": "q", "context": "abcdefg"}, config)
    assert out["answer"] == "7"
    assert len(model.prompts[2]) == 2  # system + question only
    assert len(out["messages"]) == len(first["messages"]) == 5
    # Without "context" the query is the payload again, not the previous run's context.
    assert graph.invoke({"query": "four"}, config)["answer"] == "4"


def test_batch_and_messages_output() -> None:
    graph = build_graph(model=answer_model())
    outs = graph.batch([{"query": "q", "context": "ab"}, {"query": "q", "context": "abcd"}])
    assert [o["answer"] for o in outs] == ["2", "4"]
    assert isinstance(outs[0]["messages"][1], HumanMessage)


def test_model_error_ends_the_run_with_its_best_answer() -> None:
    def respond(messages: list[BaseMessage]) -> str:
        if turn(messages) == 0:
            return code("x = 41\nprint(x + 1)")
        raise RuntimeError("provider down")

    out = build_graph(model=FakeChatModel(respond=respond)).invoke({"query": "q"})
    assert out["stopped_reason"] == "error"
    assert out["answer"] == "42"  # the best answer known: the last clean output
    assert "provider down" in out["error"] and "RuntimeError" in out["error"]
    # the autouse fixture checks that the sandbox and budget were released


def test_failing_child_gives_error_in_its_batch_slot() -> None:
    def respond(messages: list[BaseMessage]) -> str:
        if depth(messages) == 0:
            if turn(messages) == 0:
                return code("print(rlm_query_batched(['ok', 'boom']))")
            return final(last_text(messages).splitlines()[1])
        if "boom" in text_of(messages[1]):
            raise RuntimeError("child exploded")
        return final("fine")

    out = build_graph(model=FakeChatModel(respond=respond)).invoke({"query": "q"})
    assert out["answer"].startswith("['fine', 'Error")
    assert "child exploded" in out["answer"]


def test_streaming_messages_mode_keeps_usage() -> None:
    model = answer_model()
    graph = build_graph(model=model)
    chunks = list(
        graph.stream({"query": "q", "context": "abc"}, stream_mode=["messages", "values"])
    )
    values = [c for mode, c in chunks if mode == "values"][-1]
    assert values["answer"] == "3"
    assert values["usage"]["total_tokens"] == model.tokens["total_tokens"] > 0
    assert any(mode == "messages" for mode, _ in chunks)


async def test_cancelling_astream_stops_code_and_closes_the_run() -> None:
    import asyncio
    import time

    model = FakeChatModel(respond=scripted(code("import time\ntime.sleep(30)"), final("x")))
    graph = build_graph(model=model)
    started = asyncio.Event()

    async def consume() -> None:
        async for ev in graph.astream({"query": "q"}, stream_mode="custom"):
            if ev["event"] == "code":
                started.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(started.wait(), 30)
    await asyncio.sleep(0.2)
    began = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for _ in range(100):
        if not open_runs(graph):
            break
        await asyncio.sleep(0.05)
    assert time.monotonic() - began < 10
    # the autouse fixture checks that the sandbox and the budget were released


def test_timed_out_block_is_reported_and_the_run_goes_on() -> None:
    model = FakeChatModel(respond=scripted(code("while True:\n    pass"), final("recovered")))
    out = build_graph(model=model, exec_timeout=0.5).invoke({"query": "q"})
    assert out["answer"] == "recovered"
    assert "timed out" in text_of(model.prompts[1][-1])


def test_import_is_lazy() -> None:
    import subprocess
    import sys

    probe = (
        "import sys, rlm_graph; heavy = [m for m in ('langgraph', 'langchain_core') "
        "if m in sys.modules]; print(heavy); rlm_graph.build_graph; "
        "print('langgraph' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:2] == ["[]", "True"]
