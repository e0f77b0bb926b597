"""OOLONG-synth-style aggregation and OOLONG-Pairs-style families over :mod:`records`.

``oolong_agg`` asks one of: how many records have label L; how many belong to user U; how
many with label L fall in a date range; which label is most common. Counts are scored
``0.75 ** |error|``, the label by exact match.

``oolong_pairs`` asks for every pair of users who both have at least one record with a rare
label; scored by F1 over unordered pairs.
"""

from __future__ import annotations

import datetime as dt
import random
from itertools import combinations

from benchmarks.longctx.records import LABELS, START_DATE, generate, payload, users_for
from benchmarks.longctx.tasks import AnswerKind, Task

_SHARES = (0.4, 0.27, 0.2, 0.13)  # a clear most-common label
_FORMAT = (
    "Each line of the text is one record: a user id, a date and a support message. Every "
    f"message is about exactly one of these topics: {', '.join(LABELS)}. The topic is not "
    "written; infer it from the message."
)
QUESTION_TYPES: tuple[str, ...] = ("count_label", "count_user", "count_label_dates", "most_common")


def oolong_agg(size: int, seed: int) -> Task:
    """One aggregation question; the type cycles with the seed."""
    rng = random.Random(f"oolong_agg/{size}/{seed}")
    users = users_for(rng, size)
    shares = list(_SHARES)
    rng.shuffle(shares)
    weights = dict(zip(LABELS, shares, strict=False))
    records = generate(rng, size, users, weights)
    qtype = QUESTION_TYPES[seed % len(QUESTION_TYPES)]
    label = rng.choice(LABELS)
    if qtype == "count_label":
        query = f"How many records have the topic '{label}'? Answer with a number."
        gold: str | int = sum(r.label == label for r in records)
    elif qtype == "count_user":
        user = rng.choice(records).user  # a user who has records: the gold is never 0
        query = f"How many records belong to user {user}? Answer with a number."
        gold = sum(r.user == user for r in records)
    elif qtype == "count_label_dates":
        # The range covers one record with the label, so the gold is never 0.
        anchor = rng.choice([r for r in records if r.label == label] or records)
        start = max(START_DATE, anchor.date - dt.timedelta(rng.randrange(14)))
        end = start + dt.timedelta(rng.randrange(14, 90))
        query = (
            f"How many records dated from {start.isoformat()} to {end.isoformat()} "
            f"(inclusive) have the topic '{label}'? Answer with a number."
        )
        gold = sum(r.label == label and start <= r.date <= end for r in records)
    else:
        query = (
            "Which topic is the most common among all records? Answer with one of: "
            f"{', '.join(LABELS)}."
        )
        counts = {k: sum(r.label == k for r in records) for k in LABELS}
        gold = max(LABELS, key=lambda k: counts[k])
    kind: AnswerKind = "exact" if qtype == "most_common" else "number"
    return Task(
        "oolong_agg",
        size,
        seed,
        f"{_FORMAT}\n{query}",
        payload(records),
        str(gold) if kind == "exact" else gold,
        kind,
        {"question_type": qtype, "records": len(records), "choices": list(LABELS)},
    )


def oolong_pairs(size: int, seed: int) -> Task:
    """Pairs of users who both have a record with the rare label (4-7 such users)."""
    rng = random.Random(f"oolong_pairs/{size}/{seed}")
    users = users_for(rng, size)
    rare = rng.choice(LABELS)
    common = tuple(k for k in LABELS if k != rare)
    holders = rng.sample(users, min(len(users) - 1, rng.randint(4, 7)))
    weights = {k: (0.12 if k == rare else 0.88 / len(common)) for k in LABELS}
    allowed = {u: (LABELS if u in holders else common) for u in users}
    records = generate(rng, size, users, weights, allowed)
    having = sorted({r.user for r in records if r.label == rare})
    gold = [[a, b] for a, b in combinations(having, 2)]
    query = (
        f"{_FORMAT}\nList every pair of user ids such that both users have at least one record "
        f"with the topic '{rare}'. Write one pair per line as (smaller id, larger id)."
    )
    return Task(
        "oolong_pairs",
        size,
        seed,
        query,
        payload(records),
        gold,
        "pairs",
        {"label": rare, "users_with_label": len(having), "records": len(records)},
    )
