"""Run systems over tasks and write one JSONL row per (task, system)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from langchain_core.language_models import BaseChatModel

from benchmarks.longctx.families import score_task
from benchmarks.longctx.systems import Outcome, Settings, System, make_system
from benchmarks.longctx.tasks import Task

ROW_KEYS: tuple[str, ...] = (
    "family", "size", "seed", "split", "system", "model", "score", "gold", "answer", "seconds",
    "calls", "input_tokens", "output_tokens", "tokens", "fingerprint", "context_chars", "error",
    "meta", "extra",
)  # fmt: skip


def row_for(task: Task, system: str, model: str, outcome: Outcome) -> dict[str, Any]:
    """The JSONL row of one system's outcome on one task, scored."""
    return {
        "family": task.family,
        "size": task.size,
        "seed": task.seed,
        "split": task.split,
        "system": system,
        "model": model,
        "score": round(score_task(task, outcome.answer), 6),
        "gold": task.gold,
        "answer": outcome.answer,
        "seconds": round(outcome.seconds, 3),
        "calls": outcome.calls,
        "input_tokens": outcome.input_tokens,
        "output_tokens": outcome.output_tokens,
        "tokens": outcome.input_tokens + outcome.output_tokens,
        "fingerprint": task.fingerprint,
        "context_chars": len(task.context),
        "error": outcome.error,
        "meta": {k: v for k, v in task.meta.items() if k != "choices"},
        "extra": outcome.extra,
    }


def done_keys(path: Path) -> set[tuple[str, str]]:
    """``(fingerprint, system)`` of the rows already in ``path`` (for ``--resume``)."""
    if not path.exists():
        return set()
    keys = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            keys.add((row["fingerprint"], row["system"]))
    return keys


def run_suite(
    tasks: Iterable[Task],
    systems: Sequence[str],
    model: str | BaseChatModel,
    settings: Settings,
    *,
    skip: set[tuple[str, str]] | None = None,
    make: Callable[[str, str | BaseChatModel, Settings], System] = make_system,
) -> Iterator[dict[str, Any]]:
    """Yield a scored row for every task and system, systems built once, tasks one at a time."""
    label = model if isinstance(model, str) else type(model).__name__
    built = {name: make(name, model, settings) for name in systems}
    for task in tasks:
        for name, system in built.items():
            if skip and (task.fingerprint, name) in skip:
                continue
            yield row_for(task, name, label, system(task))


def write_rows(rows: Iterable[dict[str, Any]], out: TextIO, echo: TextIO | None = None) -> int:
    """Append rows as JSON lines, flushed one by one; returns how many were written."""
    n = 0
    for row in rows:
        out.write(json.dumps(row, ensure_ascii=False) + "\n")
        out.flush()
        n += 1
        if echo is not None:
            err = f"  error: {row['error']}" if row["error"] else ""
            echo.write(
                f"{row['family']} {row['size']} seed {row['seed']} {row['system']}: "
                f"score {row['score']:.2f} in {row['seconds']:.1f} s{err}\n"
            )
            echo.flush()
    return n


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a results file; a one-line error names a bad line."""
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{number}: not a JSON row ({exc.msg})") from None
    return rows
