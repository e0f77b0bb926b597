"""RULER-style variable tracking: chains of ``VAR X = VAR Y`` assignments in filler prose.

Each chain starts ``VAR A = <value>`` and continues ``VAR B = VAR A``, ``VAR C = VAR B``...,
its statements in order through the text. Distractor chains carry other values. The question
asks which variables are assigned the target value; the answer is a set of names.
"""

from __future__ import annotations

import itertools
import random
import string

from benchmarks.longctx.filler import haystack
from benchmarks.longctx.tasks import Task


def _names(rng: random.Random, n: int) -> list[str]:
    # A list, not a set: set order varies with PYTHONHASHSEED and would break determinism.
    names: list[str] = []
    while len(names) < n:
        name = "".join(rng.choices(string.ascii_uppercase, k=5))
        if name not in names:
            names.append(name)
    return names


def chain(names: list[str], value: int) -> list[str]:
    """The assignment statements of one chain, in order."""
    first = [f"VAR {names[0]} = {value}."]
    return first + [f"VAR {b} = VAR {a}." for a, b in itertools.pairwise(names)]


def variable_tracking(size: int, seed: int, hops: int = 4, distractor_chains: int = 2) -> Task:
    """Target chain of ``hops + 1`` variables plus ``distractor_chains`` chains like it."""
    rng = random.Random(f"vartrack/{size}/{seed}")
    n_chains = distractor_chains + 1
    names = _names(rng, n_chains * (hops + 1))
    values = rng.sample(range(10_000, 100_000), n_chains)
    inserts: list[tuple[float, str]] = []
    for c in range(n_chains):
        statements = chain(names[c * (hops + 1) : (c + 1) * (hops + 1)], values[c])
        depths = sorted(rng.random() for _ in statements)
        inserts += list(zip(depths, statements, strict=False))
    context = haystack(rng, size, inserts)
    query = (
        f"Find all variables that are assigned the value {values[0]} in the text, directly or "
        "through other variables. Answer with the variable names, separated by commas."
    )
    gold = sorted(names[: hops + 1])
    return Task("vartrack", size, seed, query, context, gold, "set", {"hops": hops})
