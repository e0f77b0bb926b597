"""Summaries of result rows: a Markdown table per family and a score-vs-size plot."""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.longctx.tasks import format_size

Cell = tuple[str, int, str]


def cells(rows: Sequence[dict[str, Any]]) -> dict[Cell, list[dict[str, Any]]]:
    """Rows grouped by (family, size, system)."""
    grouped: dict[Cell, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        grouped[(row["family"], int(row["size"]), row["system"])].append(row)
    return dict(grouped)


def cell_stats(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Mean score; medians of seconds, calls and tokens; count of rows and errors."""
    return {
        "n": len(rows),
        "score": statistics.fmean(r["score"] for r in rows),
        "seconds": statistics.median(r["seconds"] for r in rows),
        "calls": statistics.median(r["calls"] for r in rows),
        "tokens": statistics.median(r["tokens"] for r in rows),
        "errors": sum(1 for r in rows if r.get("error")),
    }


def markdown(rows: Sequence[dict[str, Any]]) -> str:
    """One Markdown table per family: size x system, sorted by size then system."""
    grouped = cells(rows)
    out: list[str] = []
    for family in sorted({f for f, _, _ in grouped}):
        splits = sorted(
            {r["split"] for (f, _, _), rs in grouped.items() if f == family for r in rs}
        )
        out.append(f"### {family} (split: {', '.join(splits)})\n")
        out.append(
            "| size | system | n | mean score | median s | median calls | median tokens | errors |"
        )
        out.append("|---|---|---|---|---|---|---|---|")
        for f, size, system in sorted(k for k in grouped if k[0] == family):
            s = cell_stats(grouped[(f, size, system)])
            out.append(
                f"| {format_size(size)} | {system} | {s['n']} | {s['score']:.2f} | "
                f"{s['seconds']:.1f} | {s['calls']:g} | {s['tokens']:g} | {s['errors']} |"
            )
        out.append("")
    return "\n".join(out)


def plot(rows: Sequence[dict[str, Any]], path: Path) -> None:
    """Score against input size, one line per system, one subplot per family (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grouped = cells(rows)
    families = sorted({f for f, _, _ in grouped})
    systems = sorted({s for _, _, s in grouped})
    cols = min(3, max(1, len(families)))
    nrows = (len(families) + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.3 * nrows), squeeze=False)
    for ax, family in zip(axes.flat, families, strict=False):
        for system in systems:
            sizes = sorted(sz for f, sz, s in grouped if f == family and s == system)
            if sizes:
                means = [cell_stats(grouped[(family, sz, system)])["score"] for sz in sizes]
                ax.plot(sizes, means, marker="o", label=system)
        ax.set_xscale("log")
        ticks = sorted({sz for f, sz, _ in grouped if f == family})
        ax.set_xticks(ticks, [format_size(t) for t in ticks])
        ax.minorticks_off()
        ax.set_ylim(-0.05, 1.05)
        ax.set_title(family)
        ax.set_xlabel("input size (characters)")
        ax.set_ylabel("mean score")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(families) :]:
        ax.set_visible(False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
