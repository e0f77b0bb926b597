"""Seeded filler prose (no digits, no needle phrases) and insertion of sentences at depths.

Fast at 8M characters: sentences come from a seeded pool of a few hundred, picked with one
``random.choices`` call, so the cost is one join.
"""

from __future__ import annotations

import random

_SUBJECTS = (
    "the old harbour",
    "a quiet village",
    "the river",
    "our small team",
    "the northern road",
    "every gardener",
    "the library",
    "a patient teacher",
    "the market square",
    "the mountain",
    "the committee",
    "a travelling musician",
    "the weather",
    "the orchard",
    "the lighthouse",
)
_VERBS = (
    "remembers",
    "welcomes",
    "changes",
    "follows",
    "describes",
    "protects",
    "outlasts",
    "surprises",
    "reflects",
    "gathers",
    "ignores",
    "celebrates",
    "shelters",
    "measures",
)
_OBJECTS = (
    "the long evenings",
    "a forgotten song",
    "the autumn light",
    "every visitor",
    "the tides",
    "a careful plan",
    "the winding paths",
    "the first snow",
    "old stories",
    "the busy mornings",
    "a field of barley",
    "the distant hills",
    "the sound of bells",
    "quiet conversations",
)
_TAILS = (
    "",
    " without a word",
    " as it always has",
    " in its own way",
    " before the rain",
    " after the harvest",
    " with great care",
    " for no clear reason",
    " year after year",
)

POOL_SIZE = 400


def sentence_pool(rng: random.Random, n: int = POOL_SIZE) -> list[str]:
    """``n`` seeded filler sentences, each ending with ``". "``."""
    pool = []
    for _ in range(n):
        s = f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)}"
        pool.append(s[0].upper() + s[1:] + rng.choice(_TAILS) + ". ")
    return pool


def filler(rng: random.Random, chars: int) -> list[str]:
    """Sentences whose lengths sum to at least ``chars`` (the caller trims)."""
    if chars <= 0:
        return []
    pool = sentence_pool(rng)
    mean = sum(map(len, pool)) / len(pool)
    out = rng.choices(pool, k=int(chars / mean) + 8)
    total = sum(map(len, out))
    while total < chars:
        extra = rng.choice(pool)
        out.append(extra)
        total += len(extra)
    return out


def haystack(rng: random.Random, size: int, inserts: list[tuple[float, str]]) -> str:
    """About ``size`` characters of filler with each ``(depth, sentence)`` placed at ``depth``.

    ``depth`` is a fraction of the text in [0, 1]; sentences go between filler sentences, so
    none is split. The result is at most ``size`` characters unless the inserts alone are
    longer.
    """
    needed = sum(len(s) + 1 for _, s in inserts)
    sentences = filler(rng, max(0, size - needed))
    total = needed
    kept = 0
    for s in sentences:
        if total + len(s) > size:
            break
        total += len(s)
        kept += 1
    sentences = sentences[:kept]
    # Insert from the deepest so earlier indices stay valid.
    for depth, text in sorted(inserts, key=lambda item: -item[0]):
        at = round(min(max(depth, 0.0), 1.0) * len(sentences))
        sentences.insert(at, text + " ")
    return "".join(sentences).rstrip()
