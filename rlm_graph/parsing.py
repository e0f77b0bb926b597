"""Parse a model reply into its thought, code blocks and final answer.

Format: ``Thought: ...`` followed by fenced code (```python or ```repl), or
``Final Answer: ...`` (at a line's start, or after a sentence in a reply without code). Only
fences tagged python/py/repl count as code, so a model quoting data in a plain fence does not
run it. ``Final Answer:`` inside a code block is code, not an answer, unless the reply's one
block holds only that line (which is not Python).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_FENCE = re.compile(
    r"```[ \t]*(?P<lang>python3?|py|repl)[ \t]*\r?\n(?P<code>.*?)(?:\r?\n)?[ \t]*(?:```|\Z)",
    re.DOTALL | re.IGNORECASE,
)
_ANY_FENCE = re.compile(r"```.*?(?:```|\Z)", re.DOTALL)
_FINAL = re.compile(r"^[ \t>*_#]*final[ \t]+answer[ \t*_]*:[ \t*_]*", re.IGNORECASE | re.MULTILINE)
# "Thought: ... shown above. Final Answer: 42" on one line: with no code in the reply, a label
# after a sentence's end is the answer too (a 1.5B model wrote it so twice in a run and spent
# its last replies on "neither code nor an answer", issue 12 dev traces).
_FINAL_INLINE = re.compile(r"(?<=[.!?])[ \t*_]+final[ \t]+answer[ \t*_]*:[ \t*_]*", re.IGNORECASE)
_THOUGHT = re.compile(r"^[ \t>*_#]*thought[ \t*_]*:[ \t*_]*", re.IGNORECASE | re.MULTILINE)
_THINK_TAGS = re.compile(r"<think>.*?(?:</think>|\Z)", re.DOTALL | re.IGNORECASE)
_OBSERVATION = re.compile(r"^[ \t]*observation[ \t]*:", re.IGNORECASE | re.MULTILINE)


@dataclass
class ParsedReply:
    """A model reply split into its parts."""

    thought: str = ""
    code_blocks: list[str] = field(default_factory=list)
    final_answer: str | None = None


def parse_reply(text: str) -> ParsedReply:
    """Split ``text`` into thought, runnable code blocks (in order) and final answer."""
    text = _reply_part(text or "")
    code_blocks = [m.group("code") for m in _FENCE.finditer(text)]
    code_blocks = [c for c in code_blocks if c.strip()]

    prose = _ANY_FENCE.sub("\n", text)
    final: str | None = None
    fm = _FINAL.search(prose) or (None if code_blocks else _FINAL_INLINE.search(prose))
    if fm:
        final = prose[fm.end() :].strip()
        prose = prose[: fm.start()]
    elif len(code_blocks) == 1:
        # A block holding only "Final Answer: 42" is not Python (a SyntaxError if run): a small
        # model fenced its answer (issue 12: once in a dev trace, twice in a row in a test trace).
        only = code_blocks[0].strip()
        label = _FINAL.match(only) if "\n" not in only else None
        if label:
            final, code_blocks = only[label.end() :].strip(), []

    thought = prose
    t = _THOUGHT.search(prose)
    if t:
        thought = prose[t.end() :]
    return ParsedReply(
        thought=" ".join(thought.split()), code_blocks=code_blocks, final_answer=final
    )


def _reply_part(text: str) -> str:
    """``text`` without ``<think>`` parts and up to an "Observation:" of its own: a model that
    writes one is inventing the REPL's output, and the rest is not part of its reply."""
    text = _THINK_TAGS.sub("", text)
    for m in _OBSERVATION.finditer(text):
        if not _inside(m.start(), _ANY_FENCE, text):
            return text[: m.start()]
    return text


def as_used(text: str) -> str:
    """The reply as the loop used it, for the history: without ``<think>`` parts (a reasoning
    model's own guidance is to leave them out of the history), an invented observation and,
    when it has code, anything after its last code block.

    Text after the code is never used (an answer there is a guess made before the output). A
    small model fills it with the results it expects ("After running this code, we find ...")
    or with the loop's own feedback copied from the last observation, and, kept, reads it back
    as fact or copies it into every later reply (issue 12, dev traces)."""
    text = _reply_part(text).strip()
    blocks = [m for m in _FENCE.finditer(text) if m.group("code").strip()]
    return text[: blocks[-1].end()].rstrip() if blocks else text


def drop_final_answer(text: str) -> str:
    """``text`` without its "Final Answer: ..." parts (each up to the next code fence).

    A reply that has both code and a final answer guessed the answer before seeing the output;
    kept in the history, a small model repeats that guess instead of reading the output.
    """
    while True:
        m = next(
            (m for m in _FINAL.finditer(text) if not _inside(m.start(), _ANY_FENCE, text)), None
        )
        if m is None:
            return text.rstrip()
        after = [f.start() for f in _ANY_FENCE.finditer(text) if f.start() > m.start()]
        text = text[: m.start()] + text[after[0] if after else len(text) :]


def _inside(pos: int, pattern: re.Pattern[str], text: str) -> bool:
    return any(m.start() < pos < m.end() for m in pattern.finditer(text))
