"""RULER-style needle-in-a-haystack families, written from the task definitions.

A needle is ``"One of the special magic numbers for <key> is: <value>."`` in filler prose.

- ``niah_single``: one needle at a seeded depth; answer its 7-digit value.
- ``niah_multikey``: the target needle plus distractor needles for other keys.
- ``niah_multivalue``: the target key carries several values, plus distractor keys; answer
  all of the target's values.
"""

from __future__ import annotations

import random

from benchmarks.longctx.filler import haystack
from benchmarks.longctx.tasks import Task

_ADJECTIVES = (
    "amber",
    "brisk",
    "cobalt",
    "dusty",
    "eager",
    "frosty",
    "gentle",
    "hollow",
    "ivory",
    "jagged",
    "keen",
    "lucid",
    "mellow",
    "nimble",
    "opal",
    "plucky",
    "quaint",
    "rustic",
    "silent",
    "tidal",
    "umber",
    "vivid",
    "wistful",
    "zesty",
)
_NOUNS = (
    "anchor",
    "badger",
    "candle",
    "dolphin",
    "ember",
    "falcon",
    "glacier",
    "harp",
    "iris",
    "jackal",
    "kettle",
    "lantern",
    "meadow",
    "nebula",
    "otter",
    "pebble",
    "quill",
    "raven",
    "saddle",
    "thistle",
    "urchin",
    "violin",
    "walrus",
    "yarrow",
)
DEPTHS: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def needle(key: str, value: int) -> str:
    """RULER's needle sentence."""
    return f"One of the special magic numbers for {key} is: {value}."


def _keys(rng: random.Random, n: int) -> list[str]:
    pairs = [f"{a}-{b}" for a in _ADJECTIVES for b in _NOUNS]
    return rng.sample(pairs, n)


def _values(rng: random.Random, n: int) -> list[int]:
    return rng.sample(range(1_000_000, 10_000_000), n)


def _question(key: str, many: bool) -> str:
    if many:
        return (
            f"What are all the special magic numbers for {key} mentioned in the provided text? "
            "Answer with every number, separated by commas."
        )
    return f"What is the special magic number for {key} mentioned in the provided text?"


def niah_single(size: int, seed: int) -> Task:
    """One needle at a seeded depth."""
    rng = random.Random(f"niah_single/{size}/{seed}")
    (key,), (value,) = _keys(rng, 1), _values(rng, 1)
    depth = rng.choice(DEPTHS)
    context = haystack(rng, size, [(depth, needle(key, value))])
    return Task(
        "niah_single",
        size,
        seed,
        _question(key, False),
        context,
        str(value),
        "exact",
        {"depth": depth, "key": key},
    )


def niah_multikey(size: int, seed: int, distractors: int = 5) -> Task:
    """The target needle among ``distractors`` needles for other keys, all at seeded depths."""
    rng = random.Random(f"niah_multikey/{size}/{seed}")
    keys, values = _keys(rng, distractors + 1), _values(rng, distractors + 1)
    inserts = [(rng.random(), needle(k, v)) for k, v in zip(keys, values, strict=False)]
    context = haystack(rng, size, inserts)
    return Task(
        "niah_multikey",
        size,
        seed,
        _question(keys[0], False),
        context,
        str(values[0]),
        "exact",
        {"depth": round(inserts[0][0], 3), "key": keys[0], "distractors": distractors},
    )


def niah_multivalue(size: int, seed: int, n_values: int = 4, distractors: int = 3) -> Task:
    """``n_values`` needles for the target key and one needle for each distractor key."""
    rng = random.Random(f"niah_multivalue/{size}/{seed}")
    keys = _keys(rng, distractors + 1)
    values = _values(rng, n_values + distractors)
    inserts = [(rng.random(), needle(keys[0], v)) for v in values[:n_values]]
    inserts += [
        (rng.random(), needle(k, v)) for k, v in zip(keys[1:], values[n_values:], strict=False)
    ]
    context = haystack(rng, size, inserts)
    gold = sorted(str(v) for v in values[:n_values])
    return Task(
        "niah_multivalue",
        size,
        seed,
        _question(keys[0], True),
        context,
        gold,
        "set",
        {"key": keys[0], "distractors": distractors},
    )
