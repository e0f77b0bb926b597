"""Which payloads the sandbox can load: JSON-like values, checked all the way down.

Used by the graph to refuse bad input before any model call, and by the sandbox before it
streams a payload.
"""

from __future__ import annotations

from typing import Any

ACCEPTED = "str, list, dict, int, float, bool, None (nested lists/dicts of these)"
_JSON_LEAVES = (str, int, float, bool, type(None))


def first_unsupported(payload: Any) -> str | None:
    """Name of the first type in ``payload`` the sandbox cannot load, or None when all is
    JSON-like (tuples read as lists)."""
    if isinstance(payload, _JSON_LEAVES):
        return None
    if not isinstance(payload, (list, tuple, dict)):
        return type(payload).__name__
    # Lists of strings are the common large payload: check them in one fast pass.
    if isinstance(payload, (list, tuple)) and all(type(x) is str for x in payload):
        return None
    stack: list[Any] = [payload]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            for k, v in value.items():
                if not isinstance(k, _JSON_LEAVES):
                    return f"{type(k).__name__} (as a dict key)"
                stack.append(v)
        elif isinstance(value, (list, tuple)):
            stack.extend(value)
        elif not isinstance(value, _JSON_LEAVES):
            return type(value).__name__
    return None
