"""Scorers and answer normalisation, one per answer kind.

- ``exact``: S-NIAH values, labels, default expressions. 1.0 when the normalised answer
  equals the gold, or (for a number) when the answer's numbers are exactly ``{gold}``, or (for
  a word) when the gold is the only candidate word of the answer that matches.
- ``number``: ``0.75 ** |answer - gold|`` (OOLONG), with the answer's first number.
- ``set``: F1 between the answer's items (its numbers, for numeric gold) and the gold items.
- ``pairs``: F1 over unordered pairs of ids.
- ``path``: 1.0 when the answer names the gold path (a ``./`` prefix, quotes or backticks
  allowed) and no other ``.py`` path.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

# Thousands separators only in groups of three, so "12345,23456" is two numbers.
_NUMBER = re.compile(r"(?<![\w.])-?(?:\d{1,3}(?:[,_]\d{3})+|\d+)(?:\.\d+)?(?![\w])")
_PATH = re.compile(r"[\w./-]+\.py\b")
_WRAP = " \t\r\n`'\".:;!?()[]{}*"


def clean(text: str) -> str:
    """Drop a leading ``Final Answer:`` / ``Answer:``, code fences and wrapping quotes."""
    text = text.strip()
    text = re.sub(r"^```\w*\n?|\n?```$", "", text).strip()
    text = re.sub(r"^(final answer|answer)\s*[:\-]\s*", "", text, flags=re.IGNORECASE)
    return text.strip(_WRAP)


def numbers(text: str) -> list[float]:
    """Numbers written in ``text`` in order (``1,234`` and ``1_234`` read as 1234)."""
    out = []
    for m in _NUMBER.finditer(text):
        token = m.group(0).replace(",", "").replace("_", "")
        try:
            out.append(float(token))
        except ValueError:
            continue
    return out


def items(text: str) -> list[str]:
    """List items of an answer: split on commas, semicolons, newlines, ``and``; bullets,
    quotes and brackets removed; empty items dropped."""
    text = clean(text)
    parts = re.split(r"[,;\n]|\band\b", text)
    out = []
    for part in parts:
        part = re.sub(r"^\s*(?:[-*•]|\d+[.)])\s+", "", part)
        part = part.strip(_WRAP)
        if part:
            out.append(part)
    return out


def f1(predicted: Iterable[Any], gold: Iterable[Any]) -> float:
    """F1 between two sets (1.0 when both are empty)."""
    p, g = set(predicted), set(gold)
    if not p and not g:
        return 1.0
    hit = len(p & g)
    if hit == 0:
        return 0.0
    precision, recall = hit / len(p), hit / len(g)
    return 2 * precision * recall / (precision + recall)


def score_exact(answer: str, gold: str, choices: Iterable[str] = ()) -> float:
    """1.0 for the gold answer (see module doc), else 0.0.

    With ``choices`` (the allowed answers), the answer must mention the gold and no other.
    """
    a, g = clean(answer).lower(), gold.strip().lower()
    if _norm_expr(a) == _norm_expr(g):
        return 1.0
    if re.fullmatch(r"-?\d+(?:\.\d+)?", g):
        found = set(numbers(answer))
        return 1.0 if found == {float(g)} else 0.0
    options = [c.lower() for c in choices]
    if options:
        named = {c for c in options if re.search(rf"(?<!\w){re.escape(c)}(?!\w)", a)}
        return 1.0 if named == {g} else 0.0
    if re.fullmatch(r"[a-z_]+", g):
        words = set(re.findall(r"[a-z_]+", a))
        return 1.0 if g in words and len(words) <= 12 else 0.0
    return 0.0


def _norm_expr(text: str) -> str:
    # Quote style and wrapping quotes do not matter: 'utf-8', "utf-8" and utf-8 compare equal.
    return text.replace('"', "'").strip().strip("`'").strip()


def score_number(answer: str, gold: int | float, query: str = "") -> float:
    """``0.75 ** |error|`` with the answer's first number; 0.0 when it has none.

    Unless the answer is a bare number, numbers that also occur in ``query`` (ids, dates the
    answer repeats) are skipped.
    """
    text = clean(answer)
    found = numbers(text)
    if not re.fullmatch(r"-?[\d,_]+(?:\.\d+)?", text):
        asked = set(numbers(query))
        found = [n for n in found if n not in asked]
    if not found:
        return 0.0
    return float(0.75 ** abs(found[0] - float(gold)))


def score_set(answer: str, gold: list[str], query: str = "") -> float:
    """F1 between answer items and gold items (case-insensitive).

    Numeric gold: the items are the answer's numbers (those repeated from ``query`` skipped).
    Otherwise an item in prose ("The variables are ABCDE") counts as its one word that is a
    gold item; an item naming two or more gold items, or none, stays as written (a miss).
    """
    wanted = {g.lower() for g in gold}
    if wanted and all(re.fullmatch(r"-?\d+", g) for g in wanted):
        asked = set(numbers(query))
        found = {str(int(n)) for n in numbers(answer) if n == int(n) and n not in asked}
        return f1(found, wanted)
    predicted = set()
    for item in items(answer):
        item = item.lower()
        words = {w for w in re.findall(r"[\w.]+", item) if w in wanted}
        predicted.add(words.pop() if item not in wanted and len(words) == 1 else item)
    return f1(predicted, wanted)


def pairs_in(answer: str) -> set[frozenset[int]]:
    """Unordered id pairs in an answer: its integers taken two at a time, per line when lines
    hold pairs, else over the whole text."""
    found: set[frozenset[int]] = set()
    for line in answer.splitlines():
        ids = [int(n) for n in numbers(line) if n == int(n)]
        for a, b in zip(ids[0::2], ids[1::2], strict=False):
            if a != b:
                found.add(frozenset((a, b)))
    return found


def score_pairs(answer: str, gold: list[list[int]]) -> float:
    """F1 over unordered pairs."""
    return f1(pairs_in(answer), {frozenset(p) for p in gold})


def score_path(answer: str, gold: str) -> float:
    """1.0 when the only ``.py`` path named is the gold (a leading ``./`` or ``/`` ignored)."""
    named = {p.lstrip("./") if p.startswith("./") else p for p in _PATH.findall(answer)}
    named = {p.lstrip("/") for p in named}
    if not named:
        return 0.0
    hits = {p for p in named if p == gold or p.endswith("/" + gold)}
    return 1.0 if hits and hits == named else 0.0


def score(
    kind: str,
    answer: str | None,
    gold: Any,
    *,
    query: str = "",
    choices: Iterable[str] = (),
) -> float:
    """Score ``answer`` against ``gold`` with the scorer for ``kind`` (None scores 0).

    ``query`` lets the number scorer skip numbers repeated from the question; ``choices``
    are the allowed answers of a multiple-choice question.
    """
    if answer is None:
        return 0.0
    answer = str(answer)
    if kind == "exact":
        return score_exact(answer, str(gold), choices)
    if kind == "number":
        return score_number(answer, gold, query)
    if kind == "set":
        return score_set(answer, list(gold), query)
    if kind == "pairs":
        return score_pairs(answer, list(gold))
    if kind == "path":
        return score_path(answer, str(gold))
    raise ValueError(f"unknown answer kind {kind!r}")
