"""Reading a big --context-file: the old way (read_text, errors="replace") against
rlm_graph.context_file.read_context (mmap, strict UTF-8), in fresh processes.

Run: ``uv run --no-sync python benchmarks/bench_context_file.py [--mb 512] [--rounds 3]``

Each measurement is a child process that reads the file once and reports its wall time, its
peak RSS (``ru_maxrss``: it counts the mapped file's page-cache pages, which the kernel can drop),
the peak of the Python heap (``tracemalloc``, in a second child: the copies the process itself
holds) and ``RssAnon`` right after the read.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
path, how, traced = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
if traced:
    import tracemalloc
    tracemalloc.start()
t = time.perf_counter()
if how == "old":
    text = Path(path).read_text(encoding="utf-8", errors="replace")
else:
    from rlm_graph.context_file import read_context
    text = read_context(path)
seconds = time.perf_counter() - t
anon = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("RssAnon:"))
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
heap = tracemalloc.get_traced_memory()[1] / 1e6 if traced else 0.0
print(json.dumps({"seconds": seconds, "peak_mb": peak / 1024, "anon_mb": anon / 1024,
                  "heap_peak_mb": heap, "chars": len(text)}))
"""


def measure(path: Path, how: str) -> dict[str, float]:
    def child(traced: str) -> dict[str, float]:
        cmd = [sys.executable, "-c", CHILD, str(path), how, traced]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        return json.loads(out.stdout)  # type: ignore[no-any-return]

    row = child("0")
    row["heap_peak_mb"] = child("1")["heap_peak_mb"]  # a separate run: tracing costs time
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.log"
        line = b"2026-12-02 05:00:00 INFO request served in 12 ms from host-17\n"
        with path.open("wb") as f:
            for _ in range(args.mb * 1024 * 1024 // len(line)):
                f.write(line)
        size_mb = path.stat().st_size / 1e6
        results: dict[str, list[dict[str, float]]] = {"old": [], "new": []}
        for _ in range(args.rounds):
            for how in ("old", "new"):
                results[how].append(measure(path, how))
        print(f"file: {size_mb:.0f} MB, {args.rounds} rounds, median of each")
        for how, rows in results.items():
            keys = ("seconds", "peak_mb", "anon_mb", "heap_peak_mb")
            med = {k: statistics.median(r[k] for r in rows) for k in keys}
            print(
                f"{how}: {med['seconds']:.2f} s, peak RSS {med['peak_mb']:.0f} MB (page cache "
                f"of a mapped file included), peak Python heap {med['heap_peak_mb']:.0f} MB, "
                f"anonymous RSS after the read {med['anon_mb']:.0f} MB"
            )


if __name__ == "__main__":
    main()
