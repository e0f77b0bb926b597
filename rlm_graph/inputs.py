"""Checks on the graph's input, made before any model call."""

from __future__ import annotations

from typing import Any

from rlm_graph.sandbox.payload_check import first_unsupported


class InputError(ValueError):
    """The graph input is unusable; the message says what is wrong and how to fix it."""


def validate_input(query: Any, payload: Any) -> None:
    """Raise :class:`InputError` for a missing/empty/non-string query or an unsupported payload."""
    if query is None:
        raise InputError(
            "input is missing 'query': pass {'query': 'your question', 'context': payload}"
        )
    if not isinstance(query, str):
        raise InputError(
            f"'query' must be a string, got {type(query).__name__}: pass the question as text "
            "and any data as 'context'"
        )
    if not query.strip():
        raise InputError("'query' is empty: pass the question to answer as non-empty text")
    bad = first_unsupported(payload)
    if bad is not None:
        raise InputError(
            f"unsupported 'context' type {bad}: pass a str, or a list/dict of str, numbers, "
            "bools and None (nested); convert other objects with str() or json.dumps()"
        )
