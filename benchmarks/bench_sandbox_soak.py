"""Sandbox soak (issue 11 item 15, sandbox level): many runs at once, then count what is left.

Each "run" is what one RLM run asks of its sandbox, with scripted code instead of a model: a
block that reads ``context``, a block of batched ``llm_query`` calls, and a block that recurses
through ``rlm_query`` into a child sandbox (which runs two blocks of its own and answers). Runs
go ``--concurrency`` at a time. Before and after, the script counts this host's descendant
processes, its open fds, its scratch dirs and cgroups, and its RSS; every count of leftovers
must be 0. The graph-level soak (scripted chat model through ``build_graph``) belongs with the
graph; this one exercises the sandbox alone.

Run: ``uv run --no-sync python benchmarks/bench_sandbox_soak.py [--runs 200] [--concurrency 32]
[--mode process|strict]``.
"""

from __future__ import annotations

import argparse
import gc
import glob
import os
import platform
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from rlm_graph.sandbox import Sandbox
from rlm_graph.sandbox.template import shutdown_template

PARENT_BLOCKS = (
    "n = len(context)\nprint(n)",
    "answers = llm_query_batched([f'part {i}' for i in range(4)])\nprint(len(answers))",
    "final_answer(rlm_query('summarise', context[:100]))",
)
CHILD_BLOCKS = ("m = len(context)", "final_answer(f'child saw {m} chars')")


def child_run(mode: str, query: str, context: Any = None) -> str:
    with Sandbox(context, query, mode=mode, handlers={"llm_query": str.upper}) as sb:  # type: ignore[arg-type]
        for code in CHILD_BLOCKS:
            res = sb.run(code)
        return res.final_answer or f"no answer: {res.error}"


def one_run(mode: str, index: int) -> float:
    started = time.perf_counter()
    handlers = {
        "llm_query": lambda prompt: prompt.upper(),
        "rlm_query": lambda query, context=None: child_run(mode, query, context),
    }
    payload = f"document {index} " * 500
    with Sandbox(payload, "q", mode=mode, handlers=handlers) as sb:  # type: ignore[arg-type]
        for code in PARENT_BLOCKS:
            res = sb.run(code)
            if res.error:
                raise RuntimeError(f"run {index}: {res.error}")
        if res.final_answer != "child saw 100 chars":
            raise RuntimeError(f"run {index}: answer {res.final_answer!r}")
    return time.perf_counter() - started


def descendants() -> set[int]:
    me = os.getpid()
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    parents[int(entry)] = int(f.read().rsplit(b")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    found: set[int] = set()
    todo = [me]
    while todo:
        pid = todo.pop()
        for child, parent in parents.items():
            if parent == pid and child not in found:
                found.add(child)
                todo.append(child)
    return found


def snapshot() -> dict[str, Any]:
    me = os.getpid()
    scratch = glob.glob(os.path.join(tempfile.gettempdir(), f"rlm-sandbox-{me}-*"))
    cgroups = glob.glob(f"/sys/fs/cgroup/*/rlm-graph-{me}-*")
    with open("/proc/self/status") as f:
        rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return {
        "processes": descendants(),
        "fds": len(os.listdir("/proc/self/fd")),
        "scratch": len(scratch),
        "cgroups": len(cgroups),
        "rss_mib": rss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--mode", default="process", choices=("process", "strict"))
    args = parser.parse_args()

    one_run(args.mode, -1)  # warm: the template process starts and stays (not a leak)
    gc.collect()
    before = snapshot()
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
        seconds = list(pool.map(lambda i: one_run(args.mode, i), range(args.runs)))
    wall = time.perf_counter() - t0
    gc.collect()
    time.sleep(0.5)  # processes killed at close are reaped by now
    after = snapshot()
    leaked = after["processes"] - before["processes"]
    shutdown_template()

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    print(
        f"mode {args.mode}: {args.runs} runs (+ as many child sandboxes), "
        f"{args.concurrency} at once"
    )
    print("| figure | value |\n|---|---|")
    print(f"| wall time | {wall:.1f} s |")
    print(f"| run time, median | {statistics.median(seconds):.3f} s |")
    print(f"| leaked processes | {len(leaked)} |")
    print(f"| leaked fds | {after['fds'] - before['fds']} |")
    print(f"| leaked scratch dirs | {after['scratch'] - before['scratch']} |")
    print(f"| leaked cgroups | {after['cgroups'] - before['cgroups']} |")
    print(f"| host RSS start / end | {before['rss_mib']:.0f} / {after['rss_mib']:.0f} MiB |")
    if leaked or after["fds"] > before["fds"] or after["scratch"] or after["cgroups"]:
        raise SystemExit("leaks found (see above)")


if __name__ == "__main__":
    main()
