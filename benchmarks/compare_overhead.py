"""Framework overhead per iteration of this checkout against another git revision, in one run.

Run: ``uv run --no-sync python benchmarks/compare_overhead.py --against REV [--rounds N]``

The other revision is checked out into a temporary git worktree; the two trees then take turns
(A B A B ...) running ``benchmarks/bench_graph.py --overhead-only`` in fresh processes with the
same interpreter, so drift of a shared machine hits both alike. Prints each side's median and
the median of the per-round ratios (this checkout / REV): below 1 means this checkout is faster.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def overhead_ms(tree: Path, repeat: int) -> float:
    """Figure 1 of bench_graph.py, measured with ``tree``'s code."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run(
        [sys.executable, str(tree / "benchmarks" / "bench_graph.py"), "--overhead-only",
         "--repeat", str(repeat)],
        cwd=tree, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", required=True, help="git revision to compare with")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        other = Path(tmp) / "other"
        subprocess.run(["git", "worktree", "add", "-q", "--detach", str(other), args.against],
                       cwd=ROOT, check=True)  # fmt: skip
        try:
            if not (other / "benchmarks" / "bench_graph.py").read_text().count("overhead-only"):
                # An older revision without the flag: give it this checkout's script.
                (other / "benchmarks" / "bench_graph.py").write_text(
                    (ROOT / "benchmarks" / "bench_graph.py").read_text()
                )
            mine, theirs, ratios = [], [], []
            for _ in range(args.rounds):
                a = overhead_ms(ROOT, args.repeat)
                b = overhead_ms(other, args.repeat)
                mine.append(a)
                theirs.append(b)
                ratios.append(a / b)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(other)], cwd=ROOT)
    print(f"this checkout: median {statistics.median(mine):.2f} ms per iteration {mine}")
    print(f"{args.against}: median {statistics.median(theirs):.2f} ms per iteration {theirs}")
    print(
        f"ratio (this / {args.against}), median of {args.rounds} rounds: "
        f"{statistics.median(ratios):.3f} (min {min(ratios):.3f}, max {max(ratios):.3f})"
    )


if __name__ == "__main__":
    main()
