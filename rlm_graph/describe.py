"""Describe the payload to the model without showing it: type, size, chunk sizes, a preview.

The description's size does not grow with the payload.
"""

from __future__ import annotations

import statistics
from typing import Any

QUERY_VERBATIM_CHARS = 2_000
#: Characters of the payload's start shown in the first prompt.
PROMPT_PREVIEW_CHARS = 300
MAX_LISTED_CHUNKS = 20
MAX_LISTED_KEYS = 20


def _type_name(payload: Any) -> str:
    if isinstance(payload, (list, tuple)):
        kinds = sorted({type(x).__name__ for x in payload[:1000]})
        return f"list[{' | '.join(kinds)}]" if kinds else "list"
    return type(payload).__name__


def _chars(item: Any) -> int:
    return len(item) if isinstance(item, str) else len(repr(item))


def payload_chars(payload: Any) -> int:
    """Total size in characters (strings count their length, other items their repr)."""
    if isinstance(payload, (list, tuple)):
        return sum(_chars(x) for x in payload)
    if isinstance(payload, dict):
        return sum(_chars(k) + _chars(v) for k, v in payload.items())
    return _chars(payload)


def payload_type(payload: Any) -> str:
    """Short type description such as ``str`` or ``list[str]``."""
    return _type_name(payload)


def _preview(text: str, limit: int = PROMPT_PREVIEW_CHARS) -> str:
    text = text if len(text) <= limit else text[:limit] + f"… [{len(text) - limit:,} more chars]"
    return repr(text)


def describe_payload(payload: Any) -> str:
    """Metadata lines about ``payload`` (never the payload itself)."""
    lines = [f"- type: {_type_name(payload)}", f"- total length: {payload_chars(payload):,} chars"]
    if isinstance(payload, str):
        n_lines = payload.count("\n") + (0 if payload.endswith("\n") else 1)
        lines.append(f"- lines: {n_lines:,}")
        lines.append(f"- preview: {_preview(payload)}")
    elif isinstance(payload, (list, tuple)):
        sizes = [_chars(x) for x in payload]
        lines.append(f"- chunks: {len(sizes):,}")
        if sizes and len(sizes) <= MAX_LISTED_CHUNKS:
            lines.append(f"- chunk lengths: {sizes}")
        elif sizes:
            lines.append(
                f"- chunk lengths: min {min(sizes):,}, median {int(statistics.median(sizes)):,}, "
                f"max {max(sizes):,}; first {sizes[:5]}"
            )
        if payload:
            first = payload[0]
            shown = first if isinstance(first, str) else repr(first)
            lines.append(f"- preview of context[0]: {_preview(shown)}")
    elif isinstance(payload, dict):
        keys = [repr(k) for k in list(payload)[:MAX_LISTED_KEYS]]
        more = f" (+{len(payload) - len(keys):,} more)" if len(payload) > len(keys) else ""
        lines.append(f"- keys ({len(payload):,}): {', '.join(keys)}{more}")
    return "\n".join(lines)


def describe_query(query: str) -> str:
    """The query verbatim when short, otherwise its size and a preview."""
    if len(query) <= QUERY_VERBATIM_CHARS:
        return query
    return (
        f"(The question is long: {len(query):,} chars. Read it in full from the `query` "
        f"variable.)\nStart of the question: {_preview(query, 500)}"
    )
