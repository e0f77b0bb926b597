"""Sandbox benchmarks (issue 2): prints the medians as a Markdown table.

Run: ``uv run --no-sync python benchmarks/bench_sandbox.py`` (``--quick`` for fewer repetitions,
``--mode strict`` for bubblewrap). Memory is PSS from ``/proc/PID/smaps_rollup``, summed over the
host and every sandbox process, sampled every 5 ms; PSS splits shared copy-on-write pages between
the processes that map them, so the sum does not double-count ``context`` shared by zygote and
worker.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

from rlm_graph.sandbox import Sandbox

MB = 1_000_000


def text_payload(size: int) -> str:
    line = "The quick brown fox jumps over the lazy dog; record 0123456789.\n"
    return (line * (size // len(line) + 1))[:size]


def median_of(samples: list[float]) -> float:
    return statistics.median(samples)


def per_block_overhead(mode: str, n: int) -> float:
    with Sandbox("x", mode=mode) as sb:  # type: ignore[arg-type]
        sb.run("pass")
        samples = []
        for _ in range(n):
            t = time.perf_counter()
            sb.run("pass")
            samples.append(time.perf_counter() - t)
    return median_of(samples)


def callback_round_trip(mode: str, n: int) -> float:
    code = (
        "import time, statistics\n"
        "s = []\n"
        f"for _ in range({n}):\n"
        "    t = time.perf_counter(); llm_query('x'); s.append(time.perf_counter() - t)\n"
        "print(statistics.median(s))"
    )
    with Sandbox("x", mode=mode, handlers={"llm_query": lambda p: p}) as sb:  # type: ignore[arg-type]
        return float(sb.run(code).output)


def first_block(mode: str, payload: str, n: int, template: bool = True) -> float:
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        with Sandbox(payload, mode=mode) as sb:  # type: ignore[arg-type]
            sb.fork_from_template = template
            result = sb.run("len(context)")
            samples.append(time.perf_counter() - t)
        assert result.output.strip() == str(len(payload)), result
    return median_of(samples)


def restart_after_kill(mode: str, payload: str, n: int) -> tuple[float, float]:
    """Medians: a block that kills its worker (restart included), and the restart alone."""
    with Sandbox(payload, mode=mode) as sb:  # type: ignore[arg-type]
        sb.run("pass")
        blocks, restarts = [], []
        for _ in range(n):
            result = sb.run("import os\nos._exit(1)")
            assert result.restarted, result
            blocks.append(result.seconds)
            worker = sb._res.worker
            assert worker is not None
            t = time.perf_counter()
            sb._kill_and_restart(worker, lazy=False)
            restarts.append(time.perf_counter() - t)
            sb._notice = None
    return median_of(blocks), median_of(restarts)


def concurrent_callbacks(mode: str, threads: int, latency: float, n: int) -> float:
    def slow(prompt: str) -> str:
        time.sleep(latency)
        return prompt

    code = (
        "import threading\n"
        f"ts = [threading.Thread(target=llm_query, args=(str(i),)) for i in range({threads})]\n"
        "for t in ts: t.start()\n"
        "for t in ts: t.join()"
    )
    with Sandbox("x", mode=mode, handlers={"llm_query": slow}) as sb:  # type: ignore[arg-type]
        samples = []
        for _ in range(n):
            result = sb.run(code)
            assert result.error is None, result.error
            samples.append(result.seconds)
    return median_of(samples)


def pss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def peak_memory(mode: str, size: int) -> tuple[float, float]:
    """Peak PSS (host + sandbox processes) while loading a ``size`` payload and using it."""
    baseline = pss_bytes(os.getpid())
    payload = text_payload(size)
    peak = [0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            total = sum(pss_bytes(p) for p in descendants(os.getpid()))
            peak[0] = max(peak[0], total)
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        with Sandbox(payload, mode=mode) as sb:  # type: ignore[arg-type]
            sb.run("n = len(context)")
            sb.run("k = context.count('fox')")
            sb.run("import os\nos._exit(1)")
            sb.run("print(len(context[:1000]))")
            time.sleep(0.05)
    finally:
        stop.set()
        sampler.join()
    return peak[0] / size, (peak[0] - baseline) / size


def timed(label: str, func: Callable[..., Any], *args: Any) -> Any:
    t = time.perf_counter()
    value = func(*args)
    print(f"  ... {label} done in {time.perf_counter() - t:.1f} s", flush=True)
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mode", default="process", choices=("process", "strict"))
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = parser.parse_args()
    reps = 3 if args.quick else 1
    load_before = os.getloadavg()[0]
    mode = args.mode
    rows: list[tuple[str, str, str]] = []

    overhead = timed("per-block", per_block_overhead, mode, 2000 // reps)
    rows.append(("per-block overhead (`run('pass')`)", f"{overhead * 1e3:.3f} ms", "≤ 1 ms"))
    rtt = timed("round trip", callback_round_trip, mode, 2000 // reps)
    rows.append(("callback round trip (`llm_query`, instant handler)", f"{rtt * 1e3:.3f} ms", ""))
    for size, n, target in ((MB, 15, ""), (100 * MB, 15, "≤ 0.3 s"), (1000 * MB, 3, "≤ 3 s")):
        payload = text_payload(size)
        secs = timed(f"first block {size // MB} MB", first_block, mode, payload, n)
        rows.append((f"time to first block, {size // MB:,} MB text", f"{secs:.3f} s", target))
        del payload
    if mode == "process":
        secs = timed("first block, no template", first_block, mode, text_payload(MB), 15, False)
        rows.append(
            ("time to first block, 1 MB text, zygote not from the template", f"{secs:.3f} s", "")
        )
    block, restart = timed("restart", restart_after_kill, mode, text_payload(100 * MB), 15 // reps)
    rows.append(
        (
            "restart after kill, 100 MB loaded (kill + fork + ready)",
            f"{restart * 1e3:.1f} ms",
            "≤ 50 ms",
        )
    )
    rows.append(("block that kills its worker, incl. restart, 100 MB", f"{block * 1e3:.1f} ms", ""))
    conc = timed("64 callbacks", concurrent_callbacks, mode, 64, 0.2, 7 // reps + 1)
    rows.append(
        ("64 concurrent callbacks from threads, 200 ms host latency", f"{conc:.3f} s", "≤ 0.3 s")
    )
    total, added = timed("memory", peak_memory, mode, 100 * MB)
    rows.append(("peak PSS host + sandbox, 100 MB payload (÷ payload)", f"{total:.2f}×", "≤ 2.5×"))
    rows.append(("  of which added by the payload and sandbox (÷ payload)", f"{added:.2f}×", ""))

    print()
    print(
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}, "
        f"Python {platform.python_version()}; mode={mode}; load average {load_before:.1f} "
        f"before, {os.getloadavg()[0]:.1f} after"
    )
    print()
    print("| measure | median | target |")
    print("|---|---|---|")
    for name, value, target in rows:
        print(f"| {name} | {value} | {target} |")


if __name__ == "__main__":
    main()
