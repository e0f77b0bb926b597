"""Local model benchmark: RLM vs the bare model on the demo task family.

    uv run --no-sync python benchmarks/bench_local.py --instances 20 --max-seconds 2400

For each seed, the demo task (a generated server log, ~500k chars, and a counting question) is
answered twice by the packaged Qwen2.5-Coder-1.5B on the local llama.cpp server:

* **RLM**: the full graph; per iteration we record the model call's wall time and its prompt
  size (input tokens as reported by the server);
* **bare**: one call with the log truncated to what fits the model's window.

Results are appended to a JSON file after every instance, so a wall-clock cap (or a kill)
still leaves the instances that finished. The summary prints medians.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from rlm_graph import build_graph
from rlm_graph.context import parse_setting
from rlm_graph.demo import answer_matches, make_task
from rlm_graph.local.server import LocalSettings
from rlm_graph.local.weights import cache_dir
from rlm_graph.models import resolve_model

# Qwen's tokenizer splits digits one per token: this log is ~1.8 chars per token (measured:
# 9.8k chars → 5.35k tokens). The excerpt shrinks further if the server still says it is too long.
CHARS_PER_TOKEN = 1.75
CODE_CHARS = 1_500
OUTPUT_CHARS = 300


def run_rlm(task: Any, max_iterations: int, settings: dict[str, Any]) -> dict[str, Any]:
    # Observations get the small-model cap (2,000 chars) the graph gives the local model.
    fixed = {"max_depth": 1, "max_iterations": max_iterations}
    graph = build_graph(model="local", **{**fixed, **settings})
    calls: list[dict[str, Any]] = []
    # The code the model wrote and what it printed: without them a wrong answer is unexplained.
    blocks: list[dict[str, Any]] = []
    result: dict[str, Any] = {}
    started = time.monotonic()
    ns: Any
    mode: Any
    chunk: Any
    for ns, mode, chunk in graph.stream(
        {"query": task.question, "context": task.context},
        stream_mode=["custom", "values"],
        subgraphs=True,
    ):
        if mode == "custom" and chunk.get("event") == "model_reply":
            usage = chunk.get("usage") or {}
            calls.append(
                {
                    "depth": chunk.get("depth"),
                    "iteration": chunk.get("iteration"),
                    "seconds": chunk.get("seconds"),
                    "input_tokens": usage.get("input_tokens"),
                    "output_tokens": usage.get("output_tokens"),
                    "n_code_blocks": chunk.get("n_code_blocks"),
                    "thought": str(chunk.get("thought", ""))[:OUTPUT_CHARS],
                    "has_final": chunk.get("has_final"),
                }
            )
        elif mode == "custom" and chunk.get("event") == "code":
            blocks.append(
                {
                    "key": [chunk.get("run_id"), chunk.get("iteration"), chunk.get("index")],
                    "depth": chunk.get("depth"),
                    "iteration": chunk.get("iteration"),
                    "code": str(chunk.get("code", ""))[:CODE_CHARS],
                }
            )
        elif mode == "custom" and chunk.get("event") == "observation":
            key = [chunk.get("run_id"), chunk.get("iteration"), chunk.get("index")]
            for block in blocks:
                if block["key"] == key:
                    block["output"] = str(chunk.get("output", ""))[:OUTPUT_CHARS]
                    error = chunk.get("error")
                    block["error"] = str(error)[-300:] if error else None
        elif mode == "values" and not ns:
            result = chunk
    answer = str(result.get("answer", ""))
    return {
        "answer": answer,
        "match": answer_matches(answer, task.expected),
        "iterations": result.get("iterations"),
        "stopped_reason": result.get("stopped_reason"),
        "usage": result.get("usage"),
        "seconds": time.monotonic() - started,
        "calls": calls,
        "blocks": blocks,
    }


def run_bare(task: Any, settings: LocalSettings) -> dict[str, Any]:
    model = resolve_model("local")
    budget_tokens = settings.ctx - settings.max_tokens - 200
    limit = int(budget_tokens * CHARS_PER_TOKEN)
    started = time.monotonic()
    while True:
        excerpt = task.context[:limit]
        excerpt = excerpt[: excerpt.rfind("\n") + 1]
        prompt = (
            f"Here is a server log:\n\n{excerpt}\n"
            f"Question: {task.question.split('?')[0]}? Reply with the number only."
        )
        try:
            reply = model.invoke(prompt)
            break
        except Exception as exc:
            if "exceeds the available context size" not in str(exc) or limit < 1000:
                raise
            limit = int(limit * 0.85)
    answer = str(reply.content)
    usage: dict[str, Any] = dict(reply.usage_metadata or {})
    return {
        "answer": answer,
        "match": answer_matches(answer, task.expected),
        "seconds": time.monotonic() - started,
        "input_tokens": usage.get("input_tokens"),
        "excerpt_chars": len(excerpt),
    }


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    root_calls = [c for r in rows for c in r["rlm"]["calls"] if c["depth"] == 0]
    bares = [r["bare"] for r in rows if r["bare"] is not None]
    by_iter: dict[int, list[float]] = {}
    for c in root_calls:
        if c["input_tokens"] is not None:
            by_iter.setdefault(int(c["iteration"]), []).append(float(c["input_tokens"]))
    return {
        "instances": len(rows),
        "rlm_accuracy": sum(r["rlm"]["match"] for r in rows) / len(rows) if rows else None,
        # Runs whose code printed the expected number at some point, right final answer or not:
        # tells wrong programs apart from a right result misreported.
        "rlm_code_found_answer": sum(
            any(
                answer_matches(str(b.get("output", "")), r["expected"])
                for b in r["rlm"].get("blocks", [])
            )
            for r in rows
        ),
        "bare_accuracy": sum(b["match"] for b in bares) / len(bares) if bares else None,
        "median_seconds_per_model_call": _median(
            [float(c["seconds"]) for c in root_calls if c["seconds"] is not None]
        ),
        "median_prompt_tokens_per_call": _median(
            [float(c["input_tokens"]) for c in root_calls if c["input_tokens"] is not None]
        ),
        "max_prompt_tokens_per_call": max(
            (c["input_tokens"] for c in root_calls if c["input_tokens"] is not None), default=None
        ),
        "median_prompt_tokens_by_iteration": {k: _median(v) for k, v in sorted(by_iter.items())},
        "median_rlm_iterations": _median([float(r["rlm"]["iterations"] or 0) for r in rows]),
        "median_rlm_seconds": _median(
            [float(r["rlm"]["seconds"]) for r in rows if r["rlm"]["seconds"] is not None]
        ),
        "rlm_errors": sum(1 for r in rows if r["rlm"].get("error")),
        "median_bare_seconds": _median([float(b["seconds"]) for b in bares]),
        "bare_excerpt_chars": bares[0]["excerpt_chars"] if bares else None,
        "bare_prompt_tokens": bares[0]["input_tokens"] if bares else None,
    }


def _setting(text: str) -> tuple[str, Any]:
    try:
        name, value = parse_setting(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if name in ("model", "max_iterations"):
        raise argparse.ArgumentTypeError(f"{name} is set here by this script or its own flag")
    return name, value


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--instances", type=int, default=20)
    p.add_argument("--first-seed", type=int, default=1)
    p.add_argument("--chars", type=int, default=500_000)
    p.add_argument("--max-iterations", type=int, default=4)
    p.add_argument("--max-seconds", type=float, default=2400.0, help="wall-clock cap")
    p.add_argument(
        "--summarize", metavar="JSON", help="only print the summary of an earlier results file"
    )
    p.add_argument(
        "--no-bare", action="store_true", help="RLM runs only (a quick check of the prompt)"
    )
    p.add_argument(
        "--rlm-setting",
        type=_setting,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="one more setting of the graph (e.g. dead_end_retries=2); repeat for several",
    )
    # Outside the repository: raw results are not committed.
    p.add_argument("--out", default=str(cache_dir() / "bench_local.json"))
    args = p.parse_args(argv)

    if args.summarize:
        print(json.dumps(summarize(json.loads(Path(args.summarize).read_text())["rows"]), indent=2))
        return 0
    settings = LocalSettings.from_env()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "command": " ".join(["python", *sys.argv]),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}",
        "python": platform.python_version(),
        "settings": settings.__dict__,
        "chars": args.chars,
        "max_iterations": args.max_iterations,
        "rlm_settings": dict(args.rlm_setting),
    }
    deadline = time.monotonic() + args.max_seconds
    rows: list[dict[str, Any]] = []
    for seed in range(args.first_seed, args.first_seed + args.instances):
        if time.monotonic() > deadline:
            print(f"wall-clock cap reached after {len(rows)} instances", file=sys.stderr)
            break
        task = make_task(seed=seed, chars=args.chars)
        bare = None if args.no_bare else run_bare(task, settings)
        try:
            rlm = run_rlm(task, args.max_iterations, dict(args.rlm_setting))
        except Exception as exc:  # recorded, not fatal: one failed run must not lose the rest
            rlm = {
                "answer": "",
                "match": False,
                "iterations": None,
                "stopped_reason": None,
                "usage": None,
                "seconds": None,
                "calls": [],
                "error": repr(exc)[:500],
            }
        rows.append({"seed": seed, "expected": task.expected, "rlm": rlm, "bare": bare})
        print(
            f"seed {seed}: expected {task.expected}; RLM {'ok' if rlm['match'] else 'wrong'} "
            f"({rlm['answer'][:30]!r}, {rlm['iterations']} it, {rlm['seconds'] or 0:.0f} s, "
            f"{rlm.get('error')}); bare "
            + (f"{'ok' if bare['match'] else 'wrong'} ({bare['answer'][:30]!r})" if bare else "-"),
            file=sys.stderr,
            flush=True,
        )
        out.write_text(json.dumps({**meta, "summary": summarize(rows), "rows": rows}, indent=1))
    summary = summarize(rows)
    out.write_text(json.dumps({**meta, "summary": summary, "rows": rows}, indent=1))
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
