"""The data the viewer page shows, computed in Python from a normalized trace.

Runs are flattened into a list (children referenced by id) so the page can find any run at
once; the timeline's spans come from the raw events when the trace has them, else from the
tree's own timings. Truncation is decided here, where string lengths are counted as Python
counts them (``output_chars`` is a count of code points; JavaScript counts UTF-16 units).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from rlm_graph.progress import tokens_of

__all__ = ["view_model"]

Span = dict[str, Any]


def _walk(run: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    yield run
    for it in run.get("iterations") or []:
        for child in it.get("children") or []:
            yield from _walk(child)


def _block(block: Mapping[str, Any]) -> dict[str, Any]:
    output = block.get("output")
    shown = len(output) if isinstance(output, str) else 0
    chars = block.get("output_chars")
    return {
        **block,
        "shown_chars": shown,
        "truncated": isinstance(chars, int) and chars > shown,
        "pending": "output_chars" not in block,
    }


def _iteration(it: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "n": it.get("iteration"),
        "t": it.get("t"),
        "thought": it.get("thought") or "",
        "model_seconds": it.get("model_seconds"),
        "tokens": tokens_of(it.get("usage")),
        "usage": it.get("usage") or {},
        "has_final": bool(it.get("has_final")),
        "dead_end": bool(it.get("dead_end")),
        "blocks": [_block(b) for b in it.get("code_blocks") or []],
        "subcalls": list(it.get("subcalls") or []),
        "children": [c.get("run_id") for c in it.get("children") or []],
    }


def _run(run: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": run.get("run_id"),
        "parent": run.get("parent_run_id"),
        "depth": run.get("depth") or 0,
        "t_start": run.get("t_start") or 0.0,
        "query": run.get("query") or "",
        "context_type": run.get("context_type"),
        "context_chars": run.get("context_chars"),
        "answer": run.get("answer"),
        "stopped_reason": run.get("stopped_reason"),
        "n_iterations": run.get("n_iterations"),
        "usage": run.get("usage") or {},
        "tokens": tokens_of(run.get("usage")),
        "seconds": run.get("seconds"),
        "ended": run.get("seconds") is not None,
        "iterations": [_iteration(it) for it in run.get("iterations") or []],
    }


def _event_spans(events: list[Mapping[str, Any]], t_end: float) -> list[Span]:
    """Spans (run, model, block, sub-call) from the raw events; open ones end at ``t_end``."""
    open_: dict[tuple[str, ...], Span] = {}  # keys: (kind, run, ...) of spans not yet ended
    spans: list[Span] = []

    def start(key: tuple[str, ...], span: Span) -> None:
        open_[key] = span
        spans.append(span)

    for e in events:
        kind, run, t = e.get("event"), str(e.get("run_id")), float(e.get("t") or 0.0)
        it = str(e.get("iteration") or 0)
        if kind == "run_start":
            start(("run", run), {"kind": "run", "run": run, "t0": t, "label": e.get("query")})
        elif kind == "run_end" and ("run", run) in open_:
            open_.pop(("run", run))["t1"] = t
        elif kind == "model_reply":
            t0 = max(t - float(e.get("seconds") or 0.0), 0.0)
            spans.append(
                {"kind": "model", "run": run, "t0": t0, "t1": t, "label": f"model call #{it}"}
            )
        elif kind == "code":
            start(
                ("block", run, it, str(e.get("index"))),
                {"kind": "block", "run": run, "t0": t, "label": f"block #{it}"},
            )
        elif kind == "observation" and ("block", run, it, str(e.get("index"))) in open_:
            open_.pop(("block", run, it, str(e.get("index"))))["t1"] = t
        elif kind == "subcall_start":
            label = f"{e.get('function') or e.get('kind')}: {e.get('prompt') or ''}"
            start(
                ("call", run, str(e.get("call_id"))),
                {"kind": f"sub-{e.get('kind') or 'llm'}", "run": run, "t0": t, "label": label},
            )
        elif kind == "compaction":
            t0 = max(t - float(e.get("seconds") or 0.0), 0.0)
            label = f"compaction: {e.get('tokens_before')} → {e.get('tokens_after')} tokens"
            spans.append({"kind": "compaction", "run": run, "t0": t0, "t1": t, "label": label})
        elif kind == "subcall_end" and ("call", run, str(e.get("call_id"))) in open_:
            open_.pop(("call", run, str(e.get("call_id"))))["t1"] = t
    for span in open_.values():
        span["t1"] = t_end
        span["open"] = True
    return spans


def _tree_spans(runs: list[dict[str, Any]]) -> list[Span]:
    """Spans from the tree alone (an older summary without events): runs, model calls, calls."""
    spans: list[Span] = []
    for run in runs:
        t0 = float(run["t_start"] or 0.0)
        spans.append(
            {"kind": "run", "run": run["id"], "t0": t0, "t1": t0 + float(run["seconds"] or 0.0)}
        )
        for it in run["iterations"]:
            if it["model_seconds"] is not None and it["t"] is not None:
                t = float(it["t"])
                spans.append(
                    {"kind": "model", "run": run["id"], "t0": t, "t1": t + it["model_seconds"]}
                )
            for call in it["subcalls"]:
                c0 = float(call.get("t_start") or 0.0)
                spans.append(
                    {
                        "kind": f"sub-{call.get('kind') or 'llm'}",
                        "run": run["id"],
                        "t0": c0,
                        "t1": c0 + float(call.get("seconds") or 0.0),
                        "label": call.get("prompt"),
                    }
                )
    return spans


def _lanes(runs: list[dict[str, Any]], spans: list[Span]) -> list[dict[str, Any]]:
    """Timeline rows in tree order: per run one row (run, model calls, blocks), then rows of
    sub-calls packed so that calls running at the same time sit on rows of their own."""
    by_run: dict[str, list[Span]] = {}
    for span in spans:
        by_run.setdefault(str(span["run"]), []).append(span)
    lanes: list[dict[str, Any]] = []
    for run in runs:
        mine = by_run.get(str(run["id"]), [])
        main = [s for s in mine if not s["kind"].startswith("sub-")]
        lanes.append({"run": run["id"], "depth": run["depth"], "sub": False, "spans": main})
        rows: list[list[Span]] = []
        for call in sorted(
            (s for s in mine if s["kind"].startswith("sub-")), key=lambda s: s["t0"]
        ):
            row = next((r for r in rows if r[-1]["t1"] <= call["t0"]), None)
            if row is None:
                rows.append([call])
            else:
                row.append(call)
        lanes.extend(
            {"run": run["id"], "depth": run["depth"], "sub": True, "spans": r} for r in rows
        )
    return lanes


def _totals(runs: list[dict[str, Any]], root: dict[str, Any] | None) -> dict[str, Any]:
    its = [it for r in runs for it in r["iterations"]]
    blocks = [b for it in its for b in it["blocks"]]
    calls = [c for it in its for c in it["subcalls"]]
    usage = dict(root["usage"]) if root and root["usage"] else {}
    if not usage:  # a run cut short has no run_end: add up what the model replies reported
        usage = {"total_tokens": sum(it["tokens"] for it in its)}
    return {
        "runs": len(runs),
        "iterations": len(its),
        "blocks": len(blocks),
        "block_errors": sum(1 for b in blocks if b.get("error")),
        "subcalls": len(calls),
        "subcall_errors": sum(1 for c in calls if c.get("error")),
        "usage": usage,
        "seconds": root["seconds"] if root else None,
    }


def view_model(trace: Mapping[str, Any]) -> dict[str, Any]:
    """Everything the page needs, JSON-ready, from a normalized trace (see ``load.normalize``)."""
    trees = ([trace["root"]] if trace.get("root") else []) + list(trace.get("orphans") or [])
    runs = [_run(r) for tree in trees for r in _walk(tree)]
    events = trace.get("events")
    if isinstance(events, list):
        t_end = max((float(e.get("t") or 0.0) for e in events), default=0.0)
        spans = _event_spans(events, t_end)
    else:
        spans = _tree_spans(runs)
    root = runs[0] if trace.get("root") else None
    meta = trace.get("meta") or {}
    return {
        "meta": meta,
        "answer": trace.get("answer"),
        "stopped_reason": trace.get("stopped_reason"),
        "error": trace.get("error"),
        "complete": bool(trace.get("complete", True)),
        "cut": bool(trace.get("cut")),
        "n_events": trace.get("n_events"),
        "root": root["id"] if root else None,
        "orphans": [r.get("run_id") for r in trace.get("orphans") or []],
        "runs": runs,
        "lanes": _lanes(runs, spans),
        "t_end": max((float(s.get("t1") or 0.0) for s in spans), default=0.0),
        "totals": _totals(runs, root),
    }
