"""The question's rarest term in the data: the search the loop names for a small model.

Told "grep one distinctive word from the question", a 1.5B model sent its guess again 18 times
of 25 on the dev traces. So with the compact prompt, once per run and before the model's first
block, the question's own names are counted in ``context`` in the sandbox, and the rarest one the
data holds is named wherever the loop asks for a search (the answer checks, the hints, and the
probe of :mod:`rlm_graph.probes`).
"""

from __future__ import annotations

import re
from collections.abc import Generator
from typing import Any

from rlm_graph import prompts
from rlm_graph.executor import Executor
from rlm_graph.state import KeyTerm, State
from rlm_graph.steps import RunBlock

# The question's own names for what it asks about: a quoted string, or a word with a digit, a
# joiner (eager-iris, base_url, a/b.py) or a capital past its first letter (ModelError, ERROR);
# failing those, a capitalised word inside a sentence ("subclass Generic", also "in Python").
# Plain words ("defines", "file") occur in most data by chance, so they are never named.
_QUOTED = re.compile(r"'([^'\n]{2,60})'|\"([^\"\n]{2,60})\"|`([^`\n]{2,60})`")
_TOKEN = re.compile(r"\w[\w./:-]*\w")
_NAMED = re.compile(r"\d|\w[-_./:]\w|.[A-Z]")
#: At most this many of the question's terms are counted in the data.
MAX_TERMS = 12
_COUNT = re.compile(r"[0-9]{1,15}")

_TERMS = """\
def _rlm_terms(terms):
    text = context
    if isinstance(text, str):
        print("\\n" + "\\t".join(str(text.count(t)) for t in terms))
try:
    _rlm_terms({terms!r})
finally:
    del _rlm_terms
"""


def question_terms(query: str) -> list[str]:
    """The names, numbers and quoted strings of ``query``, the surer names first, then in the
    question's order (at most :data:`MAX_TERMS`)."""
    names: list[str] = [next(g for g in m.groups() if g) for m in _QUOTED.finditer(query)]
    capitalised: list[str] = []
    # Quoted strings blanked out, so a match's position is still the query's.
    rest = _QUOTED.sub(lambda m: " " * len(m.group()), query)
    for m in _TOKEN.finditer(rest):
        word = m.group()
        before = rest[: m.start()].rstrip(" \t'\"`(")
        if _NAMED.search(word):
            names.append(word)
        elif word[0].isupper() and before and before[-1] not in ".?!:\n":
            capitalised.append(word)
    terms = (t.strip() for t in [*names, *capitalised])
    return list(dict.fromkeys(t for t in terms if t))[:MAX_TERMS]


def terms_code(terms: list[str]) -> str:
    """The sandbox code printing how often each of ``terms`` occurs in ``context``."""
    return _TERMS.format(terms=terms)


def key_term(terms: list[str], output: str) -> KeyTerm | None:
    """The term to search for: the name of ``terms`` rarest in the data (the longer one on a
    tie), or a capitalised word only when no name occurs. Read from what :func:`terms_code`
    printed; None when no term occurs or the output is not the probe's. The counts come from
    the sandbox, where the model's code runs, so they only rank: the term named is always one
    of the question's own."""
    fields = output.strip().rsplit("\n", 1)[-1].split("\t") if output.strip() else []
    if len(fields) != len(terms) or not all(_COUNT.fullmatch(f) for f in fields):
        return None
    counts = [int(f) for f in fields]
    for tier in (True, False):
        found = [(n, t) for n, t in zip(counts, terms, strict=True) if n > 0 and is_name(t) == tier]
        if found:
            count, term = min(found, key=lambda nt: (nt[0], -len(nt[1])))
            return KeyTerm(term=term, count=count)
    return None


def is_name(term: str) -> bool:
    """Whether ``term`` is a surer name than a capitalised word: it has a digit, a joiner, a
    capital past its first letter or a space (a quoted phrase)."""
    return bool(_NAMED.search(term)) or " " in term or not term[:1].isupper()


def key_term_once(
    executor: Executor, state: State
) -> Generator[RunBlock, Any, tuple[dict[str, Any], str | None]]:
    """On a run's first executed reply, when its answers are checked (small models), count the
    question's terms in ``context`` before the model's first block can rename or change it.
    Returns the state update (the term to name when the model should search) and the note
    telling the model its REPL restarted, if the lookup was cut off by the block timeout."""
    if not state.get("check_answers") or state.get("key_term_looked"):
        return {}, None
    terms = question_terms(state["query"])
    term: KeyTerm | None = None
    restarted = False
    if terms:
        outcome = yield RunBlock(executor, terms_code(terms), traced=False)
        restarted = outcome.restarted
        if not outcome.error and not restarted:
            term = key_term(terms, outcome.output)
    return {"key_term": term, "key_term_looked": True}, prompts.RESTARTED if restarted else None
