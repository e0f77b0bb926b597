"""Helper functions defined in every run's REPL before its first block: ``grep`` and ``chunks``.

They are plain Python run as a prelude block, so every executor gets them the same way and the
model can read what they do. ``chunks``' default size is what ``llm_query`` can read.
"""

from __future__ import annotations

PRELUDE = '''\
class GrepLines(list):
    """The lines grep() matched: a plain list whose repr shortens long lines, so a grep(...)
    left as a block's last expression does not echo whole lines it has just shown."""

    def __repr__(self):
        def cut(line):
            line = str(line)
            return line if len(line) <= 160 else line[:120] + f"...[{len(line):,} chars]"
        shown = ", ".join(repr(cut(x)) for x in self[:10])
        more = f", ... {len(self) - 10:,} more" if len(self) > 10 else ""
        return f"[{shown}{more}]"

    __str__ = __repr__


def _text_of(text, alias):
    """The text a helper works on: text, else its alias context=..., else the REPL's context."""
    if text is not None:
        return text
    return alias if alias is not None else globals()["context"]


def grep(pattern, text=None, context_lines=0, max_hits=20, ignore_case=True, context=None):
    """Print the lines of text (default: context) matching the regular expression pattern,
    with their line numbers and context_lines around each; in a long line (a text with few
    line breaks), the part around each match. Returns the matching lines (a list).
    context=... is another name for text (small models write grep(p, context=context))."""
    import re as _re
    text = _text_of(text, context)
    if isinstance(text, (list, tuple)):
        text = "\\n".join(map(str, text))
    elif not isinstance(text, str):
        text = str(text)
    flags = _re.IGNORECASE if ignore_case else 0
    try:
        rx = _re.compile(pattern, flags)
    except _re.error:
        rx = _re.compile(_re.escape(pattern), flags)
    lines = text.splitlines()
    hits = [i for i, line in enumerate(lines) if rx.search(line)]
    if not hits and rx.pattern != _re.escape(pattern):
        # A small model passes text with brackets as a pattern: "ERROR [payment]" is a
        # character class and matches nothing (the demo, dev seed 202).
        plain = _re.compile(_re.escape(pattern), flags)
        hits = [i for i, line in enumerate(lines) if plain.search(line)]
        if hits:
            print(f"grep: {pattern!r} matches no line as a regular expression; as plain text:")
            rx = plain
    if not hits:
        print(f"grep: no line matches {pattern!r}")
        return _grep_words(pattern, text, lines, max_hits)
    # The count first: a small model read a line number shown below as the answer to "how
    # many" when the count came only after the lines.
    if any(len(lines[i]) > 300 for i in hits):  # long lines are shown match by match
        total = sum(1 for i in hits for _ in rx.finditer(lines[i]))
        what = f"{total:,} matches of {pattern!r} in {len(hits):,} line(s)"
    else:
        total = len(hits)
        what = f"{total:,} line(s) match {pattern!r}"
    _say_count(what, total, max_hits)
    shown, printed = set(), 0
    for i in hits:
        if printed >= max_hits:
            break
        if len(lines[i]) > 300:
            for m in rx.finditer(lines[i]):
                if printed >= max_hits:
                    break
                start = max(0, m.start() - 100)
                print(f"{i + 1}: ...{lines[i][start:m.end() + 200]}...")
                printed += 1
            continue
        for j in range(max(0, i - context_lines), min(len(lines), i + context_lines + 1)):
            if j not in shown:
                shown.add(j)
                print(f"{j + 1}: {lines[j][:300]}")
        printed += 1
    _say_total(total, max_hits)
    return GrepLines(lines[i] for i in hits)


def _say_count(what, total, max_hits):
    """grep's first line: the count, before any line (hints look for it: prompts._GREP_FOUND)."""
    print(f"grep: {what}" + (f"; the first {max_hits} are shown" if total > max_hits else ""))


def _say_total(total, max_hits):
    """grep's last line when not all were shown: the total again, not the number left out (a
    small model answered "how many" with "15" from a "15 more not shown" line, dev seed 1,
    oolong_agg 32k)."""
    if total > max_hits:
        print(f"grep: {total:,} in all; the first {max_hits} are shown above")


_COMMON = frozenset("the and for with from that this what which how many much are was were "
                   "has have had its into than then there their they not any all each".split())


def _grep_words(pattern, text, lines, max_hits):
    """After a phrase matched nothing: the places holding every word of it that occurs
    somewhere (a line, or in a long line the 400 characters around its rarest word). A small
    model greps the question's wording ("ERROR service payment", "special magic number for
    k"); the data words it differently, and the model re-sent the same search when told only
    that it found nothing (the demo, dev seeds 202-204)."""
    import re as _re
    words = []
    for w in _re.findall(r"[A-Za-z0-9][\\w-]*", _re.sub(r"\\\\[A-Za-z]", " ", pattern)):
        if len(w) >= 3 and w.lower() not in _COMMON and w.lower() not in [x.lower() for x in words]:
            words.append(w)
    rx = {w: _re.compile(r"(?<![\\w-])" + _re.escape(w), _re.IGNORECASE) for w in words}
    import itertools as _it
    # Counted up to a cap: only the rarest word matters, and a 100 MB text is long to scan.
    counts = {w: sum(1 for _ in _it.islice(rx[w].finditer(text), 10_000)) for w in words}
    found = [w for w in words if counts[w]]
    missing = [w for w in words if not counts[w]]
    if len(found) < 2:
        return GrepLines()
    rare = min(found, key=lambda w: counts[w])
    long_lines = any(len(line) > 300 for line in lines)
    if long_lines:
        places = []
        for m in rx[rare].finditer(text):
            near = text[max(0, m.start() - 200):m.end() + 200]
            if all(rx[w].search(near) for w in found):
                shown = text[max(0, m.start() - 120):m.end() + 120]
                places.append("..." + " ".join(shown.split()) + "...")
    else:
        places = [line for line in lines if all(rx[w].search(line) for w in found)]
    names = ", ".join(repr(w) for w in found)
    if missing:
        print(f"grep: {', '.join(repr(w) for w in missing)} is in no line")
    if not places:
        print(f"grep: no {'place' if long_lines else 'line'} holds all of {names}")
        return GrepLines()
    # Worded as grep's own count line, so the hints know that grep found lines.
    where = "match(es) near each other of" if long_lines else "line(s) match"
    _say_count(f"{len(places):,} {where} all of {names}", len(places), max_hits)
    for place in places[:max_hits]:
        print(place[:300])
    _say_total(len(places), max_hits)
    return GrepLines(places)


def chunks(text=None, size={chunk_chars}, context=None):
    """Split text (default: context) into pieces of at most size characters, cut at line
    breaks where possible; a list is cut into groups of items of at most size characters.
    context=... is another name for text."""
    text = _text_of(text, context)
    if isinstance(text, (list, tuple)):
        out, cur, n = [], [], 0
        for item in text:
            k = len(str(item))
            if cur and n + k > size:
                out.append(cur)
                cur, n = [], 0
            cur.append(item)
            n += k
        return out + ([cur] if cur else [])
    text = str(text)
    out, start = [], 0
    while start < len(text):
        end = min(len(text), start + size)
        if end < len(text):
            cut = text.rfind("\\n", start, end)
            end = cut + 1 if cut > start else end
        out.append(text[start:end])
        start = end
    return out
'''


def prelude(chunk_chars: int) -> str:
    """The prelude block with ``chunks``' default size set to ``chunk_chars``."""
    return PRELUDE.replace("{chunk_chars}", str(int(chunk_chars)))
