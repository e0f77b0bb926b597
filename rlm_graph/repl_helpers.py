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
        return GrepLines()
    # The count first: a small model read a line number shown below as the answer to "how
    # many" when the count came only after the lines.
    if any(len(lines[i]) > 300 for i in hits):  # long lines are shown match by match
        total = sum(1 for i in hits for _ in rx.finditer(lines[i]))
        what = f"{total:,} matches of {pattern!r} in {len(hits):,} line(s)"
    else:
        total = len(hits)
        what = f"{total:,} line(s) match {pattern!r}"
    print(f"grep: {what}" + (f"; the first {max_hits} are shown" if total > max_hits else ""))
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
    if total > max_hits:
        # The total again, not the number left out: a small model answered "how many" with
        # "15" from a "15 more not shown" line (dev seed 1, oolong_agg 32k).
        print(f"grep: {total:,} in all; the first {max_hits} are shown above")
    return GrepLines(lines[i] for i in hits)


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
