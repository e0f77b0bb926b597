"""Cost of strict sandbox mode compared with process mode (offline, real processes).

Run: ``uv run --no-sync python benchmarks/bench_sandbox_strict.py [--repeat N]``

Figures (medians over ``--repeat`` runs, modes interleaved so that noise hits both alike):
1. the availability probe (first ``check_available()`` of a process; cached afterwards);
2. a bare interpreter ``python -I -c pass`` plain vs under :func:`wrap_command` (bubblewrap only);
3. sandbox start: ``Sandbox(...)`` + ``start()`` + a first ``run("pass")``, process vs strict;
4. per-block overhead: ``run("x = 1")`` on a started sandbox, process vs strict;
5. restart: a block that kills its worker, until the fresh worker is ready, process vs strict;
6. the worker's own confinement, ``confine.apply()`` in a fresh process (part of every fork).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rlm_graph.sandbox import Sandbox, strict

SANDBOX_DIR = Path(strict.__file__).resolve().parent / "child"


def _median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def probe_ms() -> float:
    """First availability check in this process (runs the bwrap probe)."""
    return _timed(strict.check_available) * 1000


def bare_interpreter_ms(repeat: int) -> tuple[float, float]:
    """Median ms of ``python -I -c pass``: plain, and under bubblewrap."""
    plain: list[float] = []
    wrapped: list[float] = []
    argv = [sys.executable, "-I", "-c", "pass"]
    with tempfile.TemporaryDirectory() as scratch:
        cmd = strict.wrap_command(argv, scratch_dir=scratch, read_only_paths=[], pass_fds=[])
        for _ in range(repeat):
            plain.append(_timed(lambda: subprocess.run(argv, check=True)))
            wrapped.append(_timed(lambda: subprocess.run(cmd, check=True)))
    return _median_ms(plain), _median_ms(wrapped)


def start_ms(repeat: int) -> dict[str, float]:
    """Median ms from ``Sandbox(...)`` to the end of the first block, per mode."""
    samples: dict[str, list[float]] = {"process": [], "strict": []}
    for _ in range(repeat):
        for mode in samples:
            t0 = time.perf_counter()
            with Sandbox("x" * 1000, "q", mode=mode) as sb:  # type: ignore[arg-type]
                sb.start()
                res = sb.run("pass")
                samples[mode].append(time.perf_counter() - t0)
                assert res.error is None, res.error
    return {mode: _median_ms(s) for mode, s in samples.items()}


def per_block_ms(blocks: int) -> dict[str, float]:
    """Median ms of one trivial block on a started sandbox, per mode (alternating)."""
    samples: dict[str, list[float]] = {"process": [], "strict": []}
    with Sandbox("x", mode="process") as proc_sb, Sandbox("x", mode="strict") as strict_sb:
        boxes = {"process": proc_sb, "strict": strict_sb}
        for sb in boxes.values():
            sb.run("pass")
        for _ in range(blocks):
            for mode, sb in boxes.items():
                samples[mode].append(_timed(lambda sb=sb: sb.run("x = 1")))
    return {mode: _median_ms(s) for mode, s in samples.items()}


def restart_ms(repeat: int) -> dict[str, float]:
    """Median ms of a block that kills its worker (``os._exit``): includes the fresh fork."""
    result = {}
    for mode in ("process", "strict"):
        with Sandbox("x" * 1000, mode=mode) as sb:  # type: ignore[arg-type]
            sb.run("pass")
            samples = []
            for _ in range(repeat):
                t0 = time.perf_counter()
                res = sb.run("import os; os._exit(1)")
                samples.append(time.perf_counter() - t0)
                assert res.restarted, res
            result[mode] = _median_ms(samples)
    return result


def confine_apply_ms(repeat: int) -> float:
    """Median ms of ``confine.apply()`` alone, measured inside fresh processes."""
    code = (
        f"import sys, time; sys.path.insert(0, {str(SANDBOX_DIR)!r}); import confine\n"
        "t = time.perf_counter(); s = confine.apply('.'); d = time.perf_counter() - t\n"
        "print(d if s['landlock'] and s['seccomp'] else -1)"
    )
    samples = []
    with tempfile.TemporaryDirectory() as scratch:
        for _ in range(repeat):
            out = subprocess.run(
                [sys.executable, "-I", "-c", code], cwd=scratch, capture_output=True, text=True
            )
            samples.append(float(out.stdout.strip() or -1))
    if min(samples) < 0:
        return float("nan")
    return _median_ms(samples)


def main() -> None:
    """Print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--blocks", type=int, default=300)
    args = parser.parse_args()

    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Linux {platform.release()}")
    print(f"python {platform.python_version()}, {strict.find_bwrap()}")
    print(f"repeat={args.repeat} blocks={args.blocks} (medians)")
    print(f"availability probe (once per process):      {probe_ms():8.1f} ms")
    plain, wrapped = bare_interpreter_ms(args.repeat)
    print(f"python -I -c pass, plain:                   {plain:8.1f} ms")
    print(
        f"python -I -c pass, under bwrap:             {wrapped:8.1f} ms  (+{wrapped - plain:.1f})"
    )
    starts = start_ms(args.repeat)
    print(f"sandbox start to first block, process:      {starts['process']:8.1f} ms")
    diff = starts["strict"] - starts["process"]
    print(f"sandbox start to first block, strict:       {starts['strict']:8.1f} ms  ({diff:+.1f})")
    blocks = per_block_ms(args.blocks)
    print(f"per block, process:                         {blocks['process']:8.3f} ms")
    print(f"per block, strict:                          {blocks['strict']:8.3f} ms")
    restarts = restart_ms(args.repeat)
    print(f"worker death + fresh worker, process:       {restarts['process']:8.1f} ms")
    print(f"worker death + fresh worker, strict:        {restarts['strict']:8.1f} ms")
    print(f"confine.apply() (Landlock + seccomp):      {confine_apply_ms(args.repeat):8.3f} ms")


if __name__ == "__main__":
    main()
