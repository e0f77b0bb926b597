"""Graph soak (issue 11 item 15): many RLM runs at once through ``build_graph``, then count
what is left.

Each run is a scripted chat model (``tests.fakes.FakeChatModel``) driving the real graph and the
real sandbox: the root reads ``context``, fans out four ``llm_query_batched`` calls, then hands a
slice to a child RLM with ``rlm_query_batched`` (two children, each running a block of its own)
and answers with what they said. Runs go ``--concurrency`` at a time on threads. Before and after,
the leak counters of ``bench_sandbox_soak.py`` count this host's descendant processes, open fds,
scratch dirs, cgroups and RSS; every count of leftovers must be 0, and every answer right.

Run: ``uv run --no-sync python benchmarks/bench_soak.py [--runs 200] [--concurrency 32]
[--mode process|strict]``.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bench_sandbox_soak import snapshot
from rlm_graph import build_graph, open_runs
from rlm_graph.sandbox.template import shutdown_template
from tests.fakes import FakeChatModel, code, depth, final, is_subcall, turn

ROOT_SCRIPT = (
    code("n = len(context)\nparts = llm_query_batched([f'part {i}' for i in range(4)])\nprint(n)"),
    code(
        "kids = rlm_query_batched([('count', context[:50]), ('count', context[:70])])\nprint(kids)"
    ),
    code("final_answer(' / '.join(kids))"),
)
CHILD_SCRIPT = (code("m = len(context)\nprint(m)"), code("final_answer(f'child saw {m}')"))


def respond(messages: list[Any]) -> str:
    if is_subcall(messages):
        return "sub"
    script = ROOT_SCRIPT if depth(messages) == 0 else CHILD_SCRIPT
    return script[min(turn(messages), len(script) - 1)] or final("?")


def one_run(graph: Any, index: int) -> float:
    started = time.perf_counter()
    out = graph.invoke({"query": "soak", "context": f"document {index} " * 300})
    if out["answer"] != "child saw 50 / child saw 70":
        raise RuntimeError(f"run {index}: answer {out['answer']!r} ({out['stopped_reason']})")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--mode", default="process", choices=("process", "strict"))
    args = parser.parse_args()

    graph = build_graph(model=FakeChatModel(respond=respond), sandbox=args.mode, max_depth=1)
    one_run(graph, -1)  # warm: the template process starts and stays (not a leak)
    gc.collect()
    before = snapshot()
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
        seconds = list(pool.map(lambda i: one_run(graph, i), range(args.runs)))
    wall = time.perf_counter() - t0
    gc.collect()
    time.sleep(0.5)  # processes killed at close are reaped by now
    after = snapshot()
    leaked = after["processes"] - before["processes"]
    runs_left = open_runs(graph)
    shutdown_template()

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    print(
        f"mode {args.mode}: {args.runs} graph runs (+2 child runs each), {args.concurrency} at once"
    )
    print("| figure | value |\n|---|---|")
    print(f"| wall time | {wall:.1f} s |")
    print(f"| run time, median | {statistics.median(seconds):.3f} s |")
    print(f"| runs still open in the graph | {len(runs_left)} |")
    print(f"| leaked processes | {len(leaked)} |")
    print(f"| leaked fds | {after['fds'] - before['fds']} |")
    print(f"| leaked scratch dirs | {after['scratch'] - before['scratch']} |")
    print(f"| leaked cgroups | {after['cgroups'] - before['cgroups']} |")
    print(f"| host RSS start / end | {before['rss_mib']:.0f} / {after['rss_mib']:.0f} MiB |")
    if leaked or runs_left or after["fds"] > before["fds"] or after["scratch"] or after["cgroups"]:
        raise SystemExit("leaks found (see above)")


if __name__ == "__main__":
    main()
