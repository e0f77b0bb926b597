"""A look at the data after a search that found nothing: where the words of the block's own
strings occur in ``context``.

A small model told "your pattern matched nothing, search for one word first" re-ran the same
code (the demo, dev seeds 202–204: a regex built from the question's '<timestamp> ERROR
[service]' format line printed 0 three times). Told instead that 'ERROR' occurs 1,590 times,
with a real line, and 'timestamp' never, it has what it needs to fix the pattern without
spending a reply on looking. The probe only reads ``context``; it defines no variable and is
not part of the run's journal, so a replay does not repeat it.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Generator
from typing import Any

from rlm_graph import prompts
from rlm_graph.executor import Executor
from rlm_graph.state import BlockResult
from rlm_graph.steps import RunBlock

#: At most this many words are looked up, in the order the code names them.
MAX_WORDS = 6
#: Characters of each example line the probe shows.
LINE_CHARS = 160

# Regex escapes (\w, \d, \s, \b, ...) are not words of the data.
_ESCAPE = re.compile(r"\\[A-Za-z]")
_WORD = re.compile(r"\w{3,}")

_PROBE = """\
def _rlm_probe(words):
    text = context
    if not isinstance(text, str):
        return
    parts = []
    for w in words:
        n = text.count(w)
        if not n:
            parts.append(f"{{w!r}} 0 times")
            continue
        i = text.find(w)
        start = text.rfind("\\n", 0, i) + 1
        end = text.find("\\n", i)
        end = len(text) if end < 0 else end
        if end - start > {line}:  # a long line: the part around the word
            start = max(start, i - {line} // 2)
        parts.append(f"{{w!r}} {{n:,}} times, e.g. {{text[start:min(end, start + {line})]!r}}")
    print("Where the words of your code's strings occur in context: " + "; ".join(parts))
try:
    _rlm_probe({words!r})
finally:
    del _rlm_probe
"""


def wants_probe(result: BlockResult) -> bool:
    """Whether the block's result is a search that found nothing (the hints say which) and the
    run goes on: after a final answer no observation is written, so a probe would be wasted."""
    if result["final_answer"] is not None:
        return False
    return prompts.found_nothing(result)


def words_of(code: str) -> list[str]:
    """The words (3+ word characters) in the string literals of ``code``, first ones first."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return []
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            for word in _WORD.findall(_ESCAPE.sub(" ", node.value)):
                if word not in found:
                    found.append(word)
    # ast.walk is breadth-first: put the words back in the order the code has them.
    found.sort(key=lambda w: code.find(w) if w in code else len(code))
    return found[:MAX_WORDS]


def probe_code(code: str) -> str | None:
    """The sandbox code of the probe for ``code``'s strings, or None when they have no words."""
    words = words_of(code)
    return _PROBE.format(words=words, line=LINE_CHARS) if words else None


def look(executor: Executor, result: BlockResult, code: str) -> Generator[RunBlock, Any, None]:
    """After a block whose search found nothing, run the probe and keep what it printed in
    ``result["probe"]`` (the observation shows it under the hint)."""
    probe = probe_code(code) if wants_probe(result) else None
    if probe is None:
        return
    outcome = yield RunBlock(executor, probe, traced=False)
    if outcome.output.strip():
        result["probe"] = outcome.output.strip()[: 4 * MAX_WORDS * LINE_CHARS]
    # A probe cut off by the block timeout restarts the REPL: the model must be told.
    result["restarted"] = result["restarted"] or outcome.restarted
