"""The task record shared by every family, sizes, seeds and the dev/test split."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any, Literal

Split = Literal["dev", "test", "adhoc"]
AnswerKind = Literal["exact", "number", "set", "pairs", "path"]

# Held-out discipline: tune only on DEV_SEEDS; TEST_SEEDS are run only to report. Every family
# uses both sets, so a split is families x seeds.
DEV_SEEDS: tuple[int, ...] = (0, 1, 2, 3, 4)
TEST_SEEDS: tuple[int, ...] = (100, 101, 102, 103, 104)
SPLITS: dict[str, tuple[int, ...]] = {"dev": DEV_SEEDS, "test": TEST_SEEDS}

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmM]?)\s*$")
_UNITS = {"": 1, "k": 1_000, "m": 1_000_000}


@dataclass(frozen=True)
class Task:
    """One generated question over one generated input of about ``size`` characters."""

    family: str
    size: int
    seed: int
    query: str
    context: str
    gold: Any
    kind: AnswerKind
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def split(self) -> Split:
        """``dev`` or ``test`` when the seed belongs to one, else ``adhoc``."""
        return split_of(self.seed)

    @property
    def fingerprint(self) -> str:
        """sha256 of the question and the input, as recorded in every result row."""
        return fingerprint(self.query, self.context)


def fingerprint(query: str, context: str) -> str:
    """sha256 hex digest of ``query``, a NUL byte, then ``context`` (UTF-8)."""
    digest = hashlib.sha256(query.encode("utf-8"))
    digest.update(b"\0")
    digest.update(context.encode("utf-8"))
    return digest.hexdigest()


def split_of(seed: int) -> Split:
    """The split a seed is declared in."""
    if seed in DEV_SEEDS:
        return "dev"
    if seed in TEST_SEEDS:
        return "test"
    return "adhoc"


def parse_size(text: str) -> int:
    """``"8k"`` → 8,000, ``"2M"`` → 2,000,000, ``"500"`` → 500 characters (decimal units)."""
    m = _SIZE.match(text)
    if not m:
        raise ValueError(f"bad size {text!r}: use a number of characters such as 8k, 128k, 2M")
    value = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    if value < 1:
        raise ValueError(f"bad size {text!r}: must be at least 1 character")
    return value


def format_size(size: int) -> str:
    """Inverse of :func:`parse_size` for round figures (8000 → ``8k``)."""
    for unit, factor in (("M", 1_000_000), ("k", 1_000)):
        if size >= factor and size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)
