"""Trajectory tree, plain progress lines and the live tree, fed with hand-written events."""

from __future__ import annotations

import io
import json
from typing import Any

from rich.console import Console

from rlm_graph.progress import LiveTree, PlainProgress, TraceBuilder, shorten


def _ev(event: str, run: str, parent: str | None, depth: int, it: int, t: float, **kw: Any) -> dict:
    return {
        "event": event,
        "run_id": run,
        "parent_run_id": parent,
        "depth": depth,
        "iteration": it,
        "t": t,
        **kw,
    }


def recursive_events() -> list[dict[str, Any]]:
    """A root run whose first iteration spawns one child run and one plain llm call."""
    usage = {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15}
    return [
        _ev("run_start", "R", None, 0, 0, 0.0, query="count errors", context_type="str",
            context_chars=5000),
        _ev("iteration_start", "R", None, 0, 1, 0.01),
        _ev("model_reply", "R", None, 0, 1, 0.2, thought="split and recurse", n_code_blocks=1,
            has_final=False, seconds=0.19, usage=usage),
        _ev("code", "R", None, 0, 1, 0.21, index=0, code="print(rlm_query('half', context[:10]))"),
        _ev("subcall_start", "R", None, 0, 1, 0.22, call_id="c1", kind="rlm", prompt="half"),
        _ev("run_start", "C", "R", 1, 0, 0.23, query="half", context_type="str",
            context_chars=10),
        _ev("iteration_start", "C", "R", 1, 1, 0.24),
        _ev("model_reply", "C", "R", 1, 1, 0.3, thought="easy", n_code_blocks=0, has_final=True,
            seconds=0.05, usage=usage),
        _ev("final", "C", "R", 1, 1, 0.31, answer="7", stopped_reason="final_answer",
            iterations=1),
        _ev("run_end", "C", "R", 1, 1, 0.32, usage=usage, seconds=0.09),
        _ev("subcall_end", "R", None, 0, 1, 0.33, call_id="c1", kind="rlm", seconds=0.11,
            answer="7", error=None, child_run_id="C"),
        _ev("subcall_start", "R", None, 0, 1, 0.34, call_id="c2", kind="llm", prompt="hi"),
        _ev("subcall_end", "R", None, 0, 1, 0.35, call_id="c2", kind="llm", seconds=0.01,
            answer="hello", error=None, child_run_id=None),
        _ev("observation", "R", None, 0, 1, 0.36, index=0, output="7\n", output_chars=2,
            error=None, seconds=0.15, timed_out=False, restarted=False),
        _ev("iteration_start", "R", None, 0, 2, 0.37),
        _ev("model_reply", "R", None, 0, 2, 0.5, thought="done", n_code_blocks=0, has_final=True,
            seconds=0.1, usage=usage),
        _ev("final", "R", None, 0, 2, 0.51, answer="14", stopped_reason="final_answer",
            iterations=2),
        _ev("run_end", "R", None, 0, 2, 0.52, usage={**usage, "total_tokens": 45}, seconds=0.52),
    ]  # fmt: skip


def test_trace_builder_nests_child_runs_under_the_spawning_iteration() -> None:
    builder = TraceBuilder()
    for e in recursive_events():
        builder.add(e)
    tree = builder.tree()
    assert tree is not None
    json.dumps(tree)  # JSON-ready
    assert tree["run_id"] == "R" and tree["answer"] == "14" and tree["n_iterations"] == 2
    first, second = tree["iterations"]
    assert first["thought"] == "split and recurse"
    assert first["code_blocks"] == [
        {
            "index": 0,
            "code": "print(rlm_query('half', context[:10]))",
            "output": "7\n",
            "output_chars": 2,
            "error": None,
            "seconds": 0.15,
            "timed_out": False,
            "restarted": False,
        }
    ]
    assert [c["kind"] for c in first["subcalls"]] == ["rlm", "llm"]
    assert first["subcalls"][0]["child_run_id"] == "C"
    (child,) = first["children"]
    assert child["run_id"] == "C" and child["depth"] == 1 and child["answer"] == "7"
    assert child["iterations"][0]["has_final"] is True
    assert second["children"] == [] and second["has_final"] is True
    assert tree["usage"]["total_tokens"] == 45
    assert builder.orphans() == []


def test_trace_builder_ignores_junk_and_keeps_orphans() -> None:
    builder = TraceBuilder()
    builder.add({"event": "run_start"})  # no run id
    builder.add({"nonsense": 1})
    assert builder.tree() is None
    builder.add(_ev("run_start", "X", "missing-parent", 1, 0, 0.0, query="q"))
    assert [o["run_id"] for o in builder.orphans()] == ["X"]


def test_plain_progress_one_line_per_step_indented_by_depth() -> None:
    out = io.StringIO()
    builder = TraceBuilder()
    progress = PlainProgress(builder, out)
    for e in recursive_events():
        builder.add(e)
        progress.on_event(e)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("[d0 R #0") and "count errors" in lines[0]
    child_lines = [ln for ln in lines if ln.startswith("  [d1 C #")]
    assert child_lines and any("final" in ln and "'7'" in ln for ln in child_lines)
    assert any("thought: 'split and recurse' (15 tok" in ln for ln in lines)
    assert any("rlm_query: 'half'" in ln for ln in lines)
    assert any("output: 2 chars" in ln for ln in lines)
    assert "run end: 45 tok" in lines[-1]


def test_live_tree_renders_runs_iterations_and_subcalls() -> None:
    buf = io.StringIO()
    console = Console(file=buf, width=200, force_terminal=False, color_system=None)
    builder = TraceBuilder()
    live = LiveTree(builder, console=console)
    for e in recursive_events():
        builder.add(e)
        live.on_event(e)
    live.close()
    text = buf.getvalue()
    assert "d0" in text and "count errors" in text
    assert "#1 split and recurse" in text and "→ 2 chars" in text
    assert "d1" in text and "half" in text  # child run drawn as a branch
    assert "llm_query 'hi'" in text
    assert "answer '14'" in text


def test_shorten() -> None:
    assert shorten("a\n  b") == "a b"
    assert shorten("x" * 10, 5) == "xxxx…"
    assert shorten(None) == ""


def test_live_view_keeps_the_latest_iterations_and_the_end_shows_all() -> None:
    builder = TraceBuilder()
    builder.add(_ev("run_start", "R", None, 0, 0, 0.0, query="q", context_type="str"))
    for n in range(1, 8):
        builder.add(_ev("model_reply", "R", None, 0, n, n, thought=f"step{n}", n_code_blocks=0))
    buf = io.StringIO()
    console = Console(file=buf, width=200, force_terminal=False, color_system=None)
    live = LiveTree(builder, console=console)
    console.print(live.render(recent=LiveTree.RECENT))
    window = buf.getvalue()
    assert "4 earlier iteration(s)" in window
    assert "step7" in window and "step5" in window and "step4" not in window
    buf.truncate(0)
    live.close()
    assert all(f"step{n}" in buf.getvalue() for n in range(1, 8))


def test_depth_capped_rlm_query_is_named_as_called() -> None:
    capped = [
        _ev("run_start", "R", None, 0, 0, 0.0, query="q", context_type="str"),
        _ev("subcall_start", "R", None, 0, 1, 0.1, call_id="c1", kind="llm",
            function="rlm_query", prompt="sub"),
        _ev("subcall_end", "R", None, 0, 1, 0.2, call_id="c1", kind="llm", function="rlm_query",
            seconds=0.1, answer="ok", error=None, child_run_id=None),
    ]  # fmt: skip
    out = io.StringIO()
    builder = TraceBuilder()
    plain = PlainProgress(builder, out)
    for e in capped:
        builder.add(e)
        plain.on_event(e)
    assert "rlm_query (plain call: max depth): 'sub'" in out.getvalue()
    tree = builder.tree()
    assert tree is not None and tree["iterations"][0]["subcalls"][0]["function"] == "rlm_query"
    buf = io.StringIO()
    live = LiveTree(builder, console=Console(file=buf, width=200, color_system=None))
    live.close()
    assert "rlm_query (plain call: max depth) 'sub'" in buf.getvalue()
