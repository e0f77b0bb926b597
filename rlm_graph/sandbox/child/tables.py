"""Tables both sides of the sandbox must agree on (stdlib only, no imports of siblings).

The host imports this as ``rlm_graph.sandbox.child.tables``, the child processes as ``tables``.
"""

from __future__ import annotations

from typing import NamedTuple


class StrKind(NamedTuple):
    """How CPython stores a ``str`` of one kind, and the codec giving exactly that layout."""

    width: int  # bytes per character
    max_char: int  # the ``maxchar`` argument that makes ``PyUnicode_New`` pick this kind
    codec: str


#: kind -> layout, for payload strings streamed in CPython's own ``str`` layout.
STR_KINDS: dict[str, StrKind] = {
    "ascii": StrKind(1, 127, "ascii"),
    "latin1": StrKind(1, 255, "latin-1"),
    "ucs2": StrKind(2, 0xFFFF, "utf-16-le"),
    "ucs4": StrKind(4, 0x10FFFF, "utf-32-le"),
}

#: Worker-side callback name -> the host handler that serves it.
CALLBACK_HANDLERS: dict[str, str] = {
    "llm_query": "llm_query",
    "llm_query_batched": "llm_query",
    "rlm_query": "rlm_query",
    "rlm_query_batched": "rlm_query",
}
CALLBACK_NAMES: tuple[str, ...] = tuple(CALLBACK_HANDLERS)
