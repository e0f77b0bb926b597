"""A look at the data after a search that found nothing: where the words of the block's own
strings occur in ``context``, and where its regular expressions stop matching.

A small model told "your pattern matched nothing, search for one word first" re-ran the same
code (the demo, dev seeds 202–204: a regex built from the question's '<timestamp> ERROR
[service]' format line printed 0 three times). Told instead that 'ERROR' occurs 1,590 times,
with a real line, and 'timestamp' never, it has what it needs to fix the pattern without
spending a reply on looking. A regular expression of the block that matches nothing is fitted
to the data: the probe shows the longest start of it that matches and the text that follows,
where the rest of the pattern fails (dev seed 0, niah_multivalue 32k: a 1.5B model sent
``gentle-badger\\s*\\d+`` three times, shown the lines reading "gentle-badger is: 8084777" but
not told which part of its pattern missed them). The probe only reads ``context``; it defines
no variable and is not part of the run's journal, so a replay does not repeat it.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Generator
from typing import Any

from rlm_graph import prompts
from rlm_graph.executor import Executor
from rlm_graph.state import BlockResult, KeyTerm
from rlm_graph.steps import RunBlock

#: At most this many words are looked up, in the order the code names them.
MAX_WORDS = 6
#: Characters of each example line the probe shows.
LINE_CHARS = 160
#: Places the probe shows that hold the question's rarest term (a word of the code gets one).
TERM_PLACES = 5

#: At most this many of the block's regular expressions are fitted to the data.
MAX_PATTERNS = 2
#: Characters of text shown after the part of the data a pattern's start matched.
AFTER = 60

# re's functions, each with where its flags go among the positional arguments.
_REGEX_CALLS = {
    "compile": 1, "search": 2, "match": 2, "fullmatch": 2, "findall": 2, "finditer": 2,
    "split": 3, "sub": 4, "subn": 4,
}  # fmt: skip
# Regex escapes (\w, \d, \s, \b, ...) are not words of the data.
_ESCAPE = re.compile(r"\\[A-Za-z]")
_WORD = re.compile(r"\w{3,}")

_PROBE = """\
def _rlm_probe(words, term, patterns):
    import re
    text = context
    if not isinstance(text, str):
        return
    def seen(w, shown=1):
        n = text.count(w)
        if not n:
            return f"{{w!r}} 0 times"
        times = "once" if n == 1 else f"{{n:,}} times"
        parts, i = [], text.find(w)
        while i >= 0 and len(parts) < shown:
            start = text.rfind("\\n", 0, i) + 1
            end = text.find("\\n", i)
            end = len(text) if end < 0 else end
            if end - start > {line}:  # a long line: the part around the word
                start = max(start, i - {line} // 2)
            parts.append(repr(text[start:min(end, start + {line})]))
            i = text.find(w, max(i + len(w), min(end, start + {line})))
        return f"{{w!r}} {{times}}, e.g. {{', '.join(parts)}}"
    def raw(p):
        return f"r'{{p}}'" if "'" not in p and "\\n" not in p else repr(p)
    def after(i):
        end = text.find("\\n", i, i + {after})
        return text[i:i + {after} if end < 0 else end + 1]
    def fit(p, flags):
        # The longest start of the pattern that matches, found by halving: a shorter start
        # matches wherever a longer one does. A start cut inside a group is closed.
        try:
            if re.search(p, text, flags):
                return None
        except (re.error, RecursionError):
            return None
        starts = []
        for k in range(len(p) - 1, 0, -1):
            start = p[:k]
            if (len(start) - len(start.rstrip("\\\\"))) % 2 or start.endswith(("(", "(?", "(?:")):
                continue  # cut inside an escape, or an empty group
            for close in ("", ")", "))"):
                try:
                    starts.append((k, re.compile(start + close, flags)))
                    break
                except (re.error, RecursionError):
                    pass
        lo, hi, best = 0, len(starts) - 1, None
        while lo <= hi:
            mid = (lo + hi) // 2
            m = starts[mid][1].search(text)
            if m and m.end() - m.start() >= 3:  # a letter or two says nothing
                best, hi = (starts[mid][0], starts[mid][1], m), mid - 1
            else:
                lo = mid + 1
        if best is None:
            return None
        k, rx, m = best
        return (f"Your pattern {{raw(p)}} matches nothing. Its start {{raw(p[:k])}} matches "
                f"{{times(rx)}}, e.g. {{m.group()[-{line}:]!r}}, and there the text goes on "
                f"{{after(m.end())!r}}, which the rest, {{raw(p[k:])}}, does not fit. "
                + bridge(p[:k], p[k:], rx, flags))
    def times(rx):
        n = sum(1 for _ in zip(range(1000), rx.finditer(text)))
        return "once" if n == 1 else f"{{n:,}} times" if n < 1000 else "1,000+ times"
    def bridge(start, rest, rx, flags):
        # The start, the text up to where the rest first matches after it, then the rest.
        try:
            tail = re.compile(rest, flags)
        except (re.error, RecursionError):
            tail = None
        for _, s in zip(range(20), rx.finditer(text) if tail else ()):
            gap = after(s.end())
            t = tail.search(gap, 1)
            if not t or t.end() == t.start():
                continue
            gap = gap[:t.start()]
            plain = "".join("\\\\" + c if c in ".^$*+?{{}}[]\\\\|()" else c for c in gap)
            try:
                fixed = re.compile(start + plain + rest, flags)
            except (re.error, RecursionError):
                continue
            if fixed.search(text):
                return f"A pattern that fits: {{raw(fixed.pattern)}} (it matches {{times(fixed)}})."
        return "Change the pattern to fit the text."
    if term:
        print("The question's rarest word in context: " + seen(term, {shown}))
    fitted = []
    for p, ignore_case in patterns:
        line = fit(p, re.IGNORECASE if ignore_case else 0)
        if line:
            print(line)
            fitted.append(p)
    words = [w for w in words if not any(w in p for p in fitted)]
    if words:
        where = "; ".join(map(seen, words))
        print("Where the words of your code's strings occur in context: " + where)
try:
    _rlm_probe({words!r}, {term!r}, {patterns!r})
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


def patterns_of(code: str) -> list[tuple[str, bool]]:
    """The regular expressions ``code`` passes to ``re``'s functions or to grep, as a literal or
    a name the block assigns a literal to, first ones first (at most :data:`MAX_PATTERNS`),
    each with whether its case is ignored."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return []
    named = {
        node.targets[0].id: _text(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
    }
    found: list[tuple[int, int, str, bool]] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        first, func = node.args[0], node.func
        pattern = _text(first) or named.get(getattr(first, "id", ""))
        if not pattern:
            continue
        if isinstance(func, ast.Name) and func.id == "grep":
            ignore = not any(
                k.arg == "ignore_case" and isinstance(k.value, ast.Constant) and not k.value.value
                for k in node.keywords
            )
        elif (
            isinstance(func, ast.Attribute)
            and isinstance(func.value, ast.Name)
            and func.value.id == "re"
            and func.attr in _REGEX_CALLS
        ):
            at = _REGEX_CALLS[func.attr]
            flags = [*node.args[at : at + 1], *(k.value for k in node.keywords if k.arg == "flags")]
            ignore = any(
                getattr(n, "attr", getattr(n, "id", None)) in ("I", "IGNORECASE")
                for f in flags
                for n in ast.walk(f)
            )
        else:
            continue
        found.append((node.lineno, node.col_offset, pattern, ignore))
    found.sort()
    unique = dict.fromkeys((p, ignore) for _, _, p, ignore in found)
    return list(unique)[:MAX_PATTERNS]


def _text(node: ast.AST) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def probe_code(code: str, term: KeyTerm | None = None) -> str | None:
    """The sandbox code of the probe for ``code``'s strings, or None when they have no words
    and ``code`` passes no pattern to ``re`` or grep (:func:`patterns_of`). With the question's
    rarest term in the data, the probe first shows the first :data:`TERM_PLACES` places holding
    it: a small model told to grep it kept trying the words of its own failed pattern instead
    (dev seed 0, niah_multivalue 32k); shown one place, it answered with the one value there.
    Each pattern that matches nothing follows, with where it stops matching."""
    key = term["term"] if term else None
    words = [w for w in words_of(code) if w != key]
    patterns = patterns_of(code)
    if not words and not patterns:
        return None
    return _PROBE.format(
        words=words, term=key, patterns=patterns, line=LINE_CHARS, shown=TERM_PLACES, after=AFTER
    )


def look(
    executor: Executor, result: BlockResult, code: str, term: KeyTerm | None = None
) -> Generator[RunBlock, Any, None]:
    """After a block whose search found nothing, run the probe and keep what it printed in
    ``result["probe"]`` (the observation shows it under the hint)."""
    probe = probe_code(code, term) if wants_probe(result) else None
    if probe is None:
        return
    outcome = yield RunBlock(executor, probe, traced=False)
    if outcome.output.strip():
        result["probe"] = outcome.output.strip()[: 4 * (MAX_WORDS + TERM_PLACES) * LINE_CHARS]
    # A probe cut off by the block timeout restarts the REPL: the model must be told.
    result["restarted"] = result["restarted"] or outcome.restarted
