"""History compaction on a long run with a small window, with the real sandbox."""

from __future__ import annotations

import threading
from typing import Any

from langchain_core.messages import BaseMessage

from rlm_graph import build_graph
from rlm_graph.compaction import SUMMARY_MARK, estimate_tokens, window_of
from rlm_graph.events import EVENT_TYPES
from tests.fakes import FakeChatModel, code, is_subcall, text_of

WINDOW = 2000
STEPS = 8


def _long_run_model() -> FakeChatModel:
    """Each root reply defines v<i> and prints 800 chars; the last sums the v's. Sub-calls are
    the summaries."""
    lock = threading.Lock()
    state = {"root": 0, "summaries": 0}

    def respond(messages: list[BaseMessage]) -> str:
        with lock:
            if is_subcall(messages):
                state["summaries"] += 1
                return f"SUMMARY {state['summaries']}: defined the v variables so far."
            i = state["root"]
            state["root"] += 1
        if i < STEPS:
            return code(f"v{i} = {i}\nprint('{i}' * 800)")
        names = "[k for k in dict(globals()) if k[:1] == 'v' and k[1:].isdigit()]"
        return code(f"final_answer(sum(globals()[k] for k in {names}))")

    return FakeChatModel(respond=respond)


def test_long_run_is_compacted_and_still_answers() -> None:
    model = _long_run_model()
    graph = build_graph(model=model, window_tokens=WINDOW, strategy="rlm", max_iterations=20)
    evs: list[dict[str, Any]] = []
    out: dict[str, Any] = {}
    for mode, chunk in graph.stream({"query": "sum"}, stream_mode=["custom", "values"]):
        if mode == "custom":
            evs.append(chunk)
        else:
            out = chunk
    assert out["answer"] == str(sum(range(STEPS)))
    compactions = [e for e in evs if e["event"] == "compaction"]
    assert compactions, "no compaction happened"
    first = compactions[0]
    assert set(first) == set(EVENT_TYPES["compaction"].__required_keys__)
    assert first["tokens_after"] < first["tokens_before"] and first["window_tokens"] == WINDOW
    assert "v0" in first["variables"] and first["messages_after"] < first["messages_before"]
    root_prompts = [p for p in model.prompts if not is_subcall(p)]
    assert max(estimate_tokens(p) for p in root_prompts) <= WINDOW
    last = text_of(root_prompts[-1][1])
    assert SUMMARY_MARK in last and "SUMMARY" in last and "v0: int" in last
    assert "Question:\nsum" in last  # the first message survives compaction
    summary_prompts = [text_of(p[-1]) for p in model.prompts if is_subcall(p)]
    listed = summary_prompts[0].split("Variables now defined in the REPL:\n", 1)[1]
    assert "v0: int" in listed and "context: str, len 3" in listed
    assert out["usage"]["llm_calls"] == model.calls  # summary calls are counted


def test_no_window_no_compaction() -> None:
    model = _long_run_model()
    out = build_graph(model=model, max_iterations=20).invoke({"query": "sum"})
    assert out["answer"] == str(sum(range(STEPS)))
    assert all(not is_subcall(p) for p in model.prompts)


def test_window_from_the_setting_or_the_model_profile() -> None:
    class WithProfile:
        def __init__(self) -> None:
            self.profile = {"max_input_tokens": 128_000}

    assert window_of(None, WithProfile()) == 128_000
    assert window_of(3000, WithProfile()) == 3000
    assert window_of(None, object()) is None


def test_trace_progress_and_viewer_show_compactions_and_tool_calls(tmp_path: Any) -> None:
    import io

    from langchain_core.tools import tool

    from rlm_graph.progress import PlainProgress, TraceBuilder
    from rlm_graph.tracefile import TraceWriter
    from rlm_graph.viewer import load_trace
    from rlm_graph.viewer.model import view_model

    @tool
    def double(x: int) -> int:
        """Double a number."""
        return 2 * x

    model = _long_run_model()
    respond = model.respond

    def with_tool(messages: list[BaseMessage]) -> str:
        reply = respond(messages)
        return reply.replace("print(", "double(1); print(", 1) if "print(" in reply else reply

    model.respond = with_tool
    graph = build_graph(model=model, tools=[double], window_tokens=WINDOW, strategy="rlm")
    builder, lines = TraceBuilder(), io.StringIO()
    progress = PlainProgress(builder, lines)
    path = tmp_path / "trace.jsonl"
    with TraceWriter(path, {"query": "sum"}) as writer:
        for event in graph.stream({"query": "sum"}, stream_mode="custom"):
            writer.event(event)
            builder.add(event)
            progress.on_event(event)
    printed = lines.getvalue()
    assert "compaction: history" in printed and "tool double done" in printed
    tree = builder.tree()
    assert tree is not None
    assert any(it.get("compaction") for it in tree["iterations"])
    view = view_model(load_trace(path))
    kinds = {span["kind"] for lane in view["lanes"] for span in lane["spans"]}
    assert {"compaction", "sub-tool"} <= kinds
