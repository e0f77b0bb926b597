"""Describe the payload to the model without showing it: type, size, chunk sizes, a preview.

The description's size does not grow with the payload.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Mapping
from dataclasses import dataclass
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
    return _preview_of(text[:limit], len(text), limit)


def _preview_of(head: str, chars: int, limit: int = PROMPT_PREVIEW_CHARS) -> str:
    """The preview of a text of ``chars`` characters that starts with ``head``."""
    text = head if chars <= limit else head[:limit] + f"… [{chars - limit:,} more chars]"
    return repr(text)


@dataclass(frozen=True)
class PayloadInfo:
    """What the prompt and the events say about a payload, without the payload: what
    :func:`describe_payload` prints, so a payload that is not in memory (a stored one, a file
    streamed into the store) is described exactly as the value would be.

    ``lines`` and ``head`` (its first :data:`PROMPT_PREVIEW_CHARS` characters) are set for a
    ``str``; ``details`` holds the other lines of a list's or dict's description.
    """

    type: str
    chars: int
    lines: int | None = None
    head: str | None = None
    details: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """A JSON-able form (kept in a stored payload's head)."""
        return {**dataclasses.asdict(self), "details": list(self.details)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PayloadInfo:
        """The inverse of :meth:`as_dict`."""
        return cls(**{**data, "details": tuple(data.get("details") or ())})


class TextMeter:
    """A text's :class:`PayloadInfo` built slice by slice: :meth:`add` each slice in order,
    then :meth:`info` is what :func:`info_of` gives for the whole text."""

    def __init__(self) -> None:
        self.chars = 0
        self.newlines = 0
        self.head = ""
        self.ends_in_newline = False

    def add(self, piece: str) -> None:
        """Count the next slice."""
        if len(self.head) < PROMPT_PREVIEW_CHARS:
            self.head += piece[: PROMPT_PREVIEW_CHARS - len(self.head)]
        self.chars += len(piece)
        self.newlines += piece.count("\n")
        if piece:
            self.ends_in_newline = piece[-1] == "\n"

    def info(self) -> PayloadInfo:
        """The description of the text added so far."""
        lines = self.newlines + (0 if self.ends_in_newline else 1)
        return PayloadInfo(type="str", chars=self.chars, lines=lines, head=self.head)


def info_of(payload: Any) -> PayloadInfo:
    """The :class:`PayloadInfo` of a payload in memory."""
    if isinstance(payload, str):
        meter = TextMeter()
        meter.add(payload)
        return dataclasses.replace(meter.info(), type=_type_name(payload))
    details: list[str] = []
    if isinstance(payload, (list, tuple)):
        sizes = [_chars(x) for x in payload]
        details.append(f"- chunks: {len(sizes):,}")
        if sizes and len(sizes) <= MAX_LISTED_CHUNKS:
            details.append(f"- chunk lengths: {sizes}")
        elif sizes:
            details.append(
                f"- chunk lengths: min {min(sizes):,}, median {int(statistics.median(sizes)):,}, "
                f"max {max(sizes):,}; first {sizes[:5]}"
            )
        if payload:
            first = payload[0]
            shown = first if isinstance(first, str) else repr(first)
            details.append(f"- preview of context[0]: {_preview(shown)}")
    elif isinstance(payload, dict):
        keys = [repr(k) for k in list(payload)[:MAX_LISTED_KEYS]]
        more = f" (+{len(payload) - len(keys):,} more)" if len(payload) > len(keys) else ""
        details.append(f"- keys ({len(payload):,}): {', '.join(keys)}{more}")
    return PayloadInfo(_type_name(payload), payload_chars(payload), details=tuple(details))


def describe_payload(payload: Any) -> str:
    """Metadata lines about ``payload`` (never the payload itself); a :class:`PayloadInfo`
    stands for the payload it describes."""
    info = payload if isinstance(payload, PayloadInfo) else info_of(payload)
    lines = [f"- type: {info.type}", f"- total length: {info.chars:,} chars"]
    if info.lines is not None:
        lines.append(f"- lines: {info.lines:,}")
        lines.append(f"- preview: {_preview_of(info.head or '', info.chars)}")
    lines.extend(info.details)
    return "\n".join(lines)


def describe_query(query: str) -> str:
    """The query verbatim when short, otherwise its size and a preview."""
    if len(query) <= QUERY_VERBATIM_CHARS:
        return query
    return (
        f"(The question is long: {len(query):,} chars. Read it in full from the `query` "
        f"variable.)\nStart of the question: {_preview(query, 500)}"
    )
