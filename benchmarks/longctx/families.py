"""The task families by name, and scoring a task's answer."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from types import MappingProxyType

from benchmarks.longctx.codeqa import codeqa
from benchmarks.longctx.niah import niah_multikey, niah_multivalue, niah_single
from benchmarks.longctx.oolong import oolong_agg, oolong_pairs
from benchmarks.longctx.scoring import score
from benchmarks.longctx.tasks import Task
from benchmarks.longctx.vartrack import variable_tracking

Generator = Callable[[int, int], Task]
MIN_SIZE = 8_000  # smaller inputs cannot hold every family's questions (e.g. two code files)

FAMILIES: MappingProxyType[str, Generator] = MappingProxyType(
    {
        "niah_single": niah_single,
        "niah_multikey": niah_multikey,
        "niah_multivalue": niah_multivalue,
        "vartrack": variable_tracking,
        "oolong_agg": oolong_agg,
        "oolong_pairs": oolong_pairs,
        "codeqa": codeqa,
    }
)


def make_task(family: str, size: int, seed: int) -> Task:
    """Generate one task; a one-line error names an unknown family or a too-small size."""
    try:
        generator = FAMILIES[family]
    except KeyError:
        raise ValueError(f"unknown family {family!r}: choose from {', '.join(FAMILIES)}") from None
    if size < MIN_SIZE:
        raise ValueError(f"size {size} is too small: the smallest input is {MIN_SIZE:,} characters")
    return generator(size, seed)


def iter_tasks(
    families: Sequence[str], sizes: Sequence[int], seeds: Sequence[int]
) -> Iterator[Task]:
    """Tasks in family, size, seed order, generated one at a time (memory: one input)."""
    for family in families:
        for size in sizes:
            for seed in seeds:
                yield make_task(family, size, seed)


def score_task(task: Task, answer: str | None) -> float:
    """Score an answer to ``task`` with its family's scorer."""
    return score(
        task.kind, answer, task.gold, query=task.query, choices=task.meta.get("choices", ())
    )
