"""Benchmarks of the RLM graph (offline, scripted fake models, the real process sandbox).

Run: ``uv run --no-sync python benchmarks/bench_graph.py [--repeat N]``

Figures (medians over ``--repeat`` runs):
1. framework overhead per iteration: instant model, ``print(1)`` each turn (target ≤ 3 ms);
2. ``llm_query_batched`` of 64 prompts at 200 ms each, default cap and ``max_concurrency=64``
   (target ≤ 0.5 s at 64);
3. ``rlm_query_batched`` of 16 children × 2 iterations × 100 ms model latency;
4. root prompt size with a 1 KB vs a 100 MB payload (target: equal within 2 %).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import itertools

from langchain_core.messages import BaseMessage

from rlm_graph import build_graph
from tests.fakes import FakeChatModel, code, depth, final, is_subcall, scripted, text_of, turn


def _events(graph: Any, inp: dict[str, Any], **kwargs: Any) -> list[dict[str, Any]]:
    return [ev for _, ev in graph.stream(inp, stream_mode="custom", subgraphs=True, **kwargs)]


def overhead_per_iteration(iterations: int = 40) -> float:
    """Median ms between iteration starts of one run (the first, with sandbox start, excluded)."""
    model = FakeChatModel(respond=lambda m: code("print(1)"))
    graph = build_graph(model=model, max_iterations=iterations)
    evs = _events(graph, {"query": "q", "context": "x"})
    starts = [e["t"] for e in evs if e["event"] == "iteration_start"]
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    return statistics.median(gaps) * 1000


def bare_langgraph_loop(iterations: int = 200, streamed: bool = False) -> float:
    """Reference: ms per iteration of a bare 3-node LangGraph loop doing nothing.

    ``streamed`` runs it the way figure 1 runs the RLM graph (``stream_mode="custom"``,
    ``subgraphs=True``): LangGraph then runs every node on its thread pool instead of inline.
    """
    from langgraph.graph import END, START, StateGraph
    from typing_extensions import TypedDict

    class S(TypedDict):
        i: int

    b: StateGraph[Any, Any, Any, Any] = StateGraph(S)
    b.add_node("a", lambda s: {"i": s["i"] + 1})
    b.add_node("b", lambda s: {})
    b.add_node("c", lambda s: {})
    b.add_edge(START, "a")
    b.add_edge("a", "b")
    b.add_edge("b", "c")
    b.add_conditional_edges("c", lambda s: END if s["i"] >= iterations else "a")
    graph = b.compile()
    began = time.perf_counter()
    if streamed:
        _events(graph, {"i": 0})
    else:
        graph.invoke({"i": 0})
    return (time.perf_counter() - began) / iterations * 1000


def llm_batch_seconds(max_concurrency: int, n: int = 64, latency: float = 0.2) -> float:
    """Wall time of the code block that runs ``llm_query_batched`` over ``n`` prompts."""

    def respond(messages: list[BaseMessage]) -> str:
        if is_subcall(messages):
            time.sleep(latency)
            return "ok"
        return code(f"r = llm_query_batched(['p'] * {n})\nprint(len(r))")

    model = FakeChatModel(respond=respond)
    graph = build_graph(model=model, max_iterations=1, max_concurrency=max_concurrency)
    evs = _events(graph, {"query": "q"})
    block = next(e for e in evs if e["event"] == "observation")
    assert block["output"].strip() == str(n), block
    return float(block["seconds"])


def rlm_batch_seconds(max_concurrency: int, n: int = 16, latency: float = 0.1) -> float:
    """Wall time of the block running ``n`` children of 2 iterations each."""

    def respond(messages: list[BaseMessage]) -> str:
        if depth(messages) == 0:
            if turn(messages) == 0:
                return code(f"r = rlm_query_batched([('n', str(i)) for i in range({n})])\nprint(r)")
            return final("done")
        time.sleep(latency)
        return code("print(context)") if turn(messages) == 0 else final("child done")

    graph = build_graph(model=FakeChatModel(respond=respond), max_concurrency=max_concurrency)
    evs = _events(graph, {"query": "q"})
    block = next(e for e in evs if e["event"] == "observation" and e["depth"] == 0)
    assert block["output"].count("child done") == n, block
    return float(block["seconds"])


def root_prompt_chars(payload: str) -> int:
    """Characters of the root model's first prompt for ``payload``."""
    model = FakeChatModel(respond=scripted(final("x")))
    build_graph(model=model).invoke({"query": "How many ERROR lines?", "context": payload})
    return sum(len(text_of(m)) for m in model.prompts[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--overhead-only",
        action="store_true",
        help="print only figure 1's median in ms (for benchmarks/compare_overhead.py)",
    )
    args = parser.parse_args()
    r = args.repeat
    if args.overhead_only:
        print(f"{statistics.median(overhead_per_iteration() for _ in range(r)):.4f}")
        return

    def med(fn: Any, *a: Any) -> float:
        return statistics.median(fn(*a) for _ in range(r))

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}"
    )
    print(f"median of {r} runs\n")
    print("| figure | value | target |")
    print("|---|---|---|")
    print(
        f"| framework overhead per iteration (instant model, `print(1)`) | "
        f"{med(overhead_per_iteration):.2f} ms | ≤ 3 ms |"
    )
    print(
        f"| reference: bare 3-node LangGraph loop, no-op nodes | "
        f"{med(bare_langgraph_loop):.2f} ms | |"
    )
    print(
        f"| reference: the same bare loop streamed like figure 1 (`custom`, `subgraphs=True`) | "
        f"{med(bare_langgraph_loop, 200, True):.2f} ms | |"
    )
    print(
        f"| `llm_query_batched` 64 × 200 ms, default cap 8 | {med(llm_batch_seconds, 8):.2f} s | "
        "(≥ 1.6 s by design) |"
    )
    print(
        f"| `llm_query_batched` 64 × 200 ms, `max_concurrency=64` | "
        f"{med(llm_batch_seconds, 64):.2f} s | ≤ 0.5 s |"
    )
    print(
        f"| `rlm_query_batched` 16 children × 2 iterations × 100 ms, default cap 8 | "
        f"{med(rlm_batch_seconds, 8):.2f} s | (sequential ≈ 3.2 s + sandbox starts) |"
    )
    print(
        f"| `rlm_query_batched` 16 children × 2 iterations × 100 ms, `max_concurrency=16` | "
        f"{med(rlm_batch_seconds, 16):.2f} s | |"
    )
    small = root_prompt_chars("x" * 1_000)
    big_payload = "x" * 100_000_000
    big = root_prompt_chars(big_payload)
    del big_payload
    print(
        f"| root prompt, 1 KB vs 100 MB payload | {small:,} vs {big:,} chars "
        f"({abs(big - small) / small * 100:.2f} %) | equal within 2 % |"
    )


if __name__ == "__main__":
    main()
